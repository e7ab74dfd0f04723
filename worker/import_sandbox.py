"""Parse an untrusted upload in a child process under a memory and a time budget.

The worker's pool child has TensorFlow's threads running, so the parser runs in a fresh
interpreter (fork + exec at once, never a bare fork), `python -m worker.import_sandbox`.
Before it imports NumPy the child caps its address space (RLIMIT_AS) and its CPU time, and
asks to die with its parent. It hands the data set back as an .npz file in the import's
temp folder (never gigabytes through a pipe), with a small JSON outcome next to it that
carries the data set's summary (counts, class names, fingerprint). The worker, which has no
memory budget, never loads that file: it checks the summary and the file's array headers,
and the store copies the file a chunk at a time. An overrun kills or fails only the child:
the worker lives on, the import fails plainly.

This module's top level imports the standard library only: the child imports it first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REQUEST, RESULT, OUTCOME = "request.json", "result.npz", "outcome.json"
# The outcome carries the summary: 1,000 class names (20,000 characters at most together,
# jobspec.text.MAX_CLASS_SUMMARY_CHARS) three times over, JSON-escaped at 6 bytes a character.
MAX_OUTCOME_BYTES = 1 << 20
# CPU seconds a child may use beyond its wall-clock budget: a backstop for a child whose
# parent vanished before it could kill it (PR_SET_PDEATHSIG covers the usual case).
CPU_SLACK_SECONDS = 30
PR_SET_PDEATHSIG = 1
# One thread per numeric library in the child: each pool thread reserves address space.
SINGLE_THREADED = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class ImportFailed(Exception):
    """The parser went over a budget or died: the message says which, in plain words."""


@dataclass(frozen=True)
class Budget:
    """What one parse may use; memory_mb None: no address-space cap (the Keras download)."""

    memory_mb: int | None
    timeout_seconds: float

    def memory_message(self) -> str:
        return (
            f"the import needed more than {self.memory_mb} MiB of memory "
            "(STACKLAB_IMPORT_MEMORY_MB)"
        )

    def time_message(self) -> str:
        return (
            f"the import took longer than {self.timeout_seconds:g} s and was stopped "
            "(STACKLAB_IMPORT_TIMEOUT_SECONDS)"
        )


@dataclass(frozen=True)
class Parsed:
    """What the child handed back: the data set's summary (checked against the arrays
    file's headers), the file itself, and the most memory the child used."""

    summary: dict[str, Any]
    arrays: Path
    peak_rss_mb: float
    peak_vm_mb: float


def parse_in_child(
    spec: str,
    *,
    work_dir: Path,
    budget: Budget,
    resize: bool = False,
    limits: Any = None,
    max_result_bytes: int = 2 << 30,
    beat: Callable[[], None] | None = None,
    beat_every: float = 5.0,
) -> Parsed:
    """load_dataset(spec) in a child process. Raises ImportFailed (a budget, a crash),
    DataError (the file's fault) or whatever `beat` raised (the child is killed first)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    for name in (RESULT, OUTCOME):
        (work_dir / name).unlink(missing_ok=True)
    request = {
        "spec": spec,
        "work_dir": str(work_dir),
        "resize": resize,
        "limits": None if limits is None else dataclasses.asdict(limits),
        "memory_bytes": None if budget.memory_mb is None else budget.memory_mb << 20,
        "cpu_seconds": int(budget.timeout_seconds) + CPU_SLACK_SECONDS,
        "parent_pid": os.getpid(),
    }
    (work_dir / REQUEST).write_text(json.dumps(request), encoding="utf-8")
    # subprocess forks and execs at once (no Python runs between them), which is safe in a
    # process with TensorFlow's threads; multiprocessing's "spawn" does the same, but in a
    # Celery pool child billiard's patched process state breaks it.
    child = subprocess.Popen(
        [sys.executable, "-m", "worker.import_sandbox", str(work_dir / REQUEST)],
        env=_child_env(),
        stdin=subprocess.DEVNULL,
        close_fds=True,
    )
    try:
        timed_out = _wait(child, budget.timeout_seconds, beat, beat_every)
    finally:
        if child.poll() is None:  # over time, or `beat` said the import is not ours now
            child.kill()
            child.wait()
    if timed_out:
        raise ImportFailed(budget.time_message())
    return _read_back(work_dir, budget, child.returncode, max_result_bytes)


def _child_env() -> dict[str, str]:
    env = {**os.environ, **dict.fromkeys(SINGLE_THREADED, "1"), "MALLOC_ARENA_MAX": "2"}
    root = str(Path(__file__).resolve().parents[1])  # importable without an installed copy
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _wait(
    child: subprocess.Popen[bytes],
    timeout: float,
    beat: Callable[[], object] | None,
    every: float,
) -> bool:
    """Wait for the child, beating every `every` s; True when it ran out of time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            child.wait(max(0.0, min(every, deadline - time.monotonic())))
            return False
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= deadline:
            return True
        if beat is not None:
            beat()


def _read_back(work_dir: Path, budget: Budget, exitcode: int, max_bytes: int) -> Parsed:
    """The child's data set summary and file, after checking what it said and its file's
    size and array headers; the arrays themselves are never read here."""
    # Deferred (NumPy): this module's top level stays standard-library only, see above.
    from worker.ml.datasets.dataset import DataError
    from worker.ml.datasets.npz import check_saved

    outcome = _outcome(work_dir / OUTCOME)
    error = outcome.get("error")
    if error == "data":
        raise DataError(str(outcome.get("message") or "the file could not be read"))
    if error == "memory":
        raise ImportFailed(budget.memory_message())
    if error is not None:
        raise ImportFailed(str(outcome.get("message") or error))
    if exitcode != 0 or not outcome.get("ok"):
        raise ImportFailed(_death_message(exitcode, budget))
    result = work_dir / RESULT
    size = result.stat().st_size if result.is_file() else -1
    if not 0 < size <= max_bytes:
        raise ImportFailed(f"the import left a result of {size:,} bytes (limit {max_bytes:,})")
    try:
        summary = check_saved(result, outcome.get("summary"))
    except DataError as exc:  # our own child wrote it: not the file's fault
        raise ImportFailed(f"the import's result does not check out: {exc}") from exc
    return Parsed(
        summary,
        result,
        float(outcome.get("peak_rss_mb", 0)),
        float(outcome.get("peak_vm_mb", 0)),
    )


def _outcome(path: Path) -> dict:
    """The child's JSON outcome; {} when it wrote none (killed) or something odd."""
    try:
        if path.stat().st_size > MAX_OUTCOME_BYTES:
            return {}
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _death_message(exitcode: int | None, budget: Budget) -> str:
    """Why a child that wrote no outcome ended, as far as its exit code tells."""
    if exitcode is not None and exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
        if -exitcode == signal.SIGXCPU:
            return budget.time_message()
    else:
        how = f"exited with code {exitcode}"
    if budget.memory_mb is None:
        return f"the import process {how}"
    maybe = budget.memory_message().replace("the import needed", "it may have needed")
    return f"the import process {how}; {maybe}"


# ---- in the child ---------------------------------------------------------------------


def main(request_path: str) -> None:
    """`python -m worker.import_sandbox request.json`: the child's entry point."""
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    _die_with_parent(request["parent_pid"])
    _cap(request["memory_bytes"], request["cpu_seconds"])
    work_dir = Path(request["work_dir"])
    outcome = _parse(request["spec"], work_dir, request["resize"], request["limits"])
    outcome |= _peaks()
    (work_dir / OUTCOME).write_text(json.dumps(outcome), encoding="utf-8")


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this child when the worker that started it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it died before the line above took effect
        os._exit(1)


def _cap(memory_bytes: int | None, cpu_seconds: int) -> None:
    import resource

    if memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    else:  # the Keras download: no GPU for a process that only unpacks a file
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))


def _parse(spec: str, work_dir: Path, resize: bool, limits: dict | None) -> dict:
    try:  # NumPy and the readers load only now, under the budgets set above
        from worker.ml.datasets.dataset import DataError, reason
        from worker.ml.datasets.limits import DEFAULT_LIMITS, ImportLimits
        from worker.ml.datasets.load import load_dataset
    except MemoryError:  # a budget too small for NumPy itself
        return {"error": "memory"}
    try:
        within = DEFAULT_LIMITS if limits is None else ImportLimits(**limits)
        dataset = load_dataset(spec, resize=resize, limits=within)
        dataset.save(work_dir / RESULT)
        summary = dataset.summary()  # the worker reads this, never the arrays
    except MemoryError:
        return {"error": "memory"}
    except DataError as err:
        return {"error": "data", "message": str(err)}
    except Exception as err:  # reported to the person who uploaded the file
        return {"error": "unexpected", "message": f"unexpected error ({reason(err)})"}
    return {"ok": True, "summary": summary}


def _peaks() -> dict:
    """Peak resident and virtual memory of this process, in MiB (Linux)."""
    peaks = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmPeak"):
                name = "peak_rss_mb" if key == "VmHWM" else "peak_vm_mb"
                peaks[name] = round(int(value.split()[0]) / 1024, 1)
    return peaks


if __name__ == "__main__":
    main(sys.argv[1])
