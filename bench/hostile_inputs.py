"""Hostile inputs (issue 19): every row of the issue's table replayed against a real stack.

Each row gets a fresh embedded stack started from a checkout (`python -m cli.main serve`
in that directory, with a temporary STACKLAB_DATA_DIR and STACKLAB_TOKEN set; --workers 1
only for the rows that need a worker): whatever the checkout's `serve` does (its uvicorn
settings, its server) is what is measured. Rows that need stored content seed it through
the checkout's own store services before the web starts. Per row: the HTTP answers
(statuses), wall time, the peak RSS growth of the web process and of each worker process
(main, pool child, and any child they start, e.g. the import's parse child: sampled from
/proc every 50 ms, VmHWM and VmRSS), the growth of the SQLite files, and the row's own fact.

    python bench/hostile_inputs.py [--root PATH] [--before-root PATH] [--rows a,b]
        [--cap 60] [--fields 4500000] [--header-mb 40] [--csv-runs 10000] [--quick]

--before-root: the same rows first against that checkout (the old code), printed side by
side with --root's. A row over its cap (--cap; the 400k-image row: --zeros-cap) reports
"> cap (stopped)": its stack is killed and the next row starts a fresh one. --quick makes
every input small (a smoke run of the script, not a measurement). Rows: see ROWS below.
Last line of stdout: one JSON object with every number.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jobspec.status import ImportPhase

HERE = Path(__file__).resolve().parents[1]
TOKEN = "hostile-bench-" + secrets.token_hex(8)
PY = sys.executable

# What a checkout's own services seed into its store (run in that checkout, so old and new
# code each write rows their own way). Prints one JSON line: what the rows need to know.
SETUP = r"""
import json, sys
from store.db import session_scope, upgrade_schema
from worker.datasets import ensure_builtin
upgrade_schema()
ensure_builtin("demo")
seed, count = sys.argv[1], int(sys.argv[2])
out = {}

def finished_run(session, *, kind="finetune", name="hostile", stage="finetune", parent=None):
    from jobspec.status import RunStatus
    from store.datasets import service as datasets_service
    from store.runs import attempts
    from store.runs import metrics as metrics_service
    from store.runs import service as runs_service
    dataset_id = datasets_service.get_by_name(session, "demo").id
    try:  # the kind's full default parameters, as a launched run stores them
        from jobspec import kinds
        params = kinds.get(kind).params().model_dump(mode="json")
    except Exception:
        params = {}
    run = runs_service.create_run(
        session=session, kind=kind, name=name, tags=["bench"], params=params, seed=0,
        dataset_id=dataset_id, parent_run_id=parent, group_id=None,
    )
    session.flush()
    attempts.claim(session=session, run_id=run.id, worker_host="bench", device="CPU", versions={})
    for epoch in (1, 2):
        metrics_service.log_epoch(
            session=session, run_id=run.id, stage=stage, step=epoch,
            values={"loss": 1 / epoch, "val_accuracy": 0.5 + epoch / 10},
        )
    return run

# What a finished 10-class finetune's result holds (evaluate.py's evaluation, in short).
CLASSES = [str(i) for i in range(10)]
RESULT = {
    "test_accuracy": 0.61, "balanced_accuracy": 0.6, "macro_f1": 0.6,
    "class_names": CLASSES,
    "per_class": {
        c: {"precision": 0.6, "recall": 0.6, "f1": 0.6, "support": 1000} for c in CLASSES
    },
    "confusion_matrix": [[100 if i == j else 10 for j in range(10)] for i in range(10)],
    "training": {"epochs_run": 2, "best_epoch": 2, "stopped_early": False},
}

if seed in ("run", "runs"):  # a pretrain and two finetunes of it, finished
    with session_scope() as session:
        from jobspec.status import RunStatus
        from store.runs import attempts
        pretrain = finished_run(session, kind="pretrain", name="root", stage="ae01")
        attempts.finish(session=session, run_id=pretrain.id, attempt=1, status=RunStatus.SUCCEEDED)
        ids = [pretrain.id]
        for i in range(2 if seed == "run" else 1):
            run = finished_run(session, name=f"hostile {i}", parent=pretrain.id)
            attempts.finish(
                session=session, run_id=run.id, attempt=1, status=RunStatus.SUCCEEDED,
                result=RESULT,
            )
            ids.append(run.id)
        out["run_id"], out["ids"] = ids[1], ids
    if seed == "runs" and count > len(ids):
        import sqlite3
        from store.settings import get_settings
        db = sqlite3.connect(str(get_settings().data_dir / "stacklab.db"))
        cols = [r[1] for r in db.execute("PRAGMA table_info(runs)") if r[1] != "id"]
        names = ", ".join(f'"{c}"' for c in cols)
        db.execute("BEGIN")
        db.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            f"INSERT INTO runs ({names}) SELECT {names} FROM runs, n WHERE runs.id = ?",
            (count - len(ids), out["run_id"]),  # `count` runs in all
        )
        first_copy = out["run_id"]
        cols = [r[1] for r in db.execute("PRAGMA table_info(metric_summaries)") if r[1] != "run_id"]
        names = ", ".join(f's."{c}"' for c in cols)
        db.execute(  # each copy gets the finetune's metric summaries (its best score)
            f"INSERT INTO metric_summaries (run_id, {names.replace('s.', '')}) "
            f"SELECT r.id, {names} FROM runs r JOIN metric_summaries s ON s.run_id = ? "
            f"WHERE r.id > ?",
            (first_copy, max(ids)),
        )
        db.commit()
        out["runs"] = db.execute("SELECT count(*) FROM runs").fetchone()[0]
elif seed == "stopped":  # a cancelled finetune that kept an epoch and its classifier
    with session_scope() as session:
        from jobspec.status import RunStatus
        from store.artifacts import service as artifacts_service
        from store.runs import attempts
        run = finished_run(session, name="stopped")
        artifacts_service.store_bytes(
            session=session, data=b"not really a model", name="classifier.keras",
            kind="model", run_id=run.id,
        )
        attempts.finish(session=session, run_id=run.id, attempt=1, status=RunStatus.CANCELLED)
        out["run_id"] = run.id
elif seed == "cookie":
    try:
        from backend.security import session_value
        out["cookie"] = session_value(sys.argv[3])
    except Exception as err:
        out["cookie_error"] = repr(err)
print(json.dumps(out))
"""


# --- processes and memory, from /proc ----------------------------------------------------


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(pid: int, kids: dict[int, list[int]] | None = None) -> list[int]:
    kids = _children_map() if kids is None else kids
    out, todo = [], list(kids.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(kids.get(child, []))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class Sampler:
    """Peak RSS of the web process and of every process of the worker trees during a row."""

    def __init__(self, web_pid: int, worker_pids: list[int]):
        self.web_pid, self.worker_pids = web_pid, worker_pids
        self.web_before = _status_kb(web_pid, "VmRSS")
        self.web_hwm_before = _status_kb(web_pid, "VmHWM")
        self.web_peak = self.web_before
        self.web_cpu_before = self.web_cpu = cpu_seconds(web_pid)
        self.first: dict[int, int] = {}  # pid -> RSS when first seen (row start or birth)
        self.peak: dict[int, int] = {}
        self.role: dict[int, str] = {}
        self.marks: dict[str, float] = {}
        self._hwm_start: dict[int, int] = {}
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        self.web_cpu = max(self.web_cpu, cpu_seconds(self.web_pid))  # 0 once it is gone
        self.web_peak = max(self.web_peak, _status_kb(self.web_pid, "VmRSS"))
        hwm = _status_kb(self.web_pid, "VmHWM")
        if hwm > self.web_hwm_before:  # a peak between two samples
            self.web_peak = max(self.web_peak, hwm)
        if not self.worker_pids:
            return
        kids = _children_map()
        for main in self.worker_pids:
            for pid, role in [(main, "main")] + [
                (p, "pool" if p in kids.get(main, []) else "child") for p in descendants(main, kids)
            ]:
                rss = _status_kb(pid, "VmRSS")
                if not rss:
                    continue
                if pid not in self.first:
                    self.first[pid], self.role[pid] = rss, role
                    self.peak[pid] = rss
                hwm = _status_kb(pid, "VmHWM")
                # VmHWM of a process born during the row is its own peak; of an older one
                # only when it rose past where it stood at the row's start.
                self.peak[pid] = max(self.peak[pid], rss, hwm if hwm > self._hwm0(pid) else 0)

    def _hwm0(self, pid: int) -> int:
        if pid not in self._hwm_start:
            self._hwm_start[pid] = _status_kb(pid, "VmHWM")
        return self._hwm_start[pid]

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    def web_growth_mb(self) -> float:
        return round((self.web_peak - self.web_before) / 1024, 1)

    def mark(self, label: str) -> None:
        """The web's peak growth so far, under a label (a phase of the row)."""
        self._sample()
        self.marks[label] = self.web_growth_mb()

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sample()
        workers: dict[str, float] = {}
        for pid, first in self.first.items():
            role = self.role[pid]
            growth = round((self.peak[pid] - first) / 1024, 1)
            workers[role] = max(workers.get(role, 0.0), growth)
        return {
            "web_rss_before_mb": round(self.web_before / 1024, 1),
            "web_growth_mb": self.web_growth_mb(),
            "web_marks_mb": self.marks,
            "web_cpu_s": round(self.web_cpu - self.web_cpu_before, 2),
            "worker_growth_mb": workers,  # largest growth per role: main, pool, child
            "worker_processes_seen": len(self.first),
        }


def sqlite_mb(data_dir: Path) -> float:
    total = 0
    for path in data_dir.glob("*.db*"):
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total / 2**20


# --- the stack -----------------------------------------------------------------------------


class Stack:
    """`python -m cli.main serve` from a checkout, on a fresh data dir, until stopped."""

    def __init__(self, root: Path, workers: int, tmp: Path):
        self.root, self.workers = root, workers
        self.data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=tmp))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STACKLAB_")}
        for key in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
            env.pop(key, None)
        env.update(
            STACKLAB_DATA_DIR=str(self.data_dir),
            STACKLAB_TOKEN=TOKEN,
            PYTHONPATH=str(root),
            PYTHONDONTWRITEBYTECODE="1",
        )
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.web_pid = 0
        self.worker_pids: list[int] = []
        self.log = self.data_dir / "serve.log"

    def setup(self, seed: str = "", count: int = 1) -> dict:
        """Schema, the demo data set, and the row's seed, by the checkout's own code."""
        done = subprocess.run(
            [PY, "-c", SETUP, seed or "-", str(count), TOKEN],
            cwd=self.root, env=self.env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"setup {seed!r} failed in {self.root}:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def start(self, timeout: float = 180) -> None:
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [PY, "-m", "cli.main", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", str(self.workers)],
                cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the web never answered: {self.log.read_text()[-2000:]}")
        kids = _children_map()
        for pid in kids.get(self.proc.pid, []):
            line = cmdline(pid)
            if "celery" in line:
                self.worker_pids.append(pid)
            elif line:
                self.web_pid = pid
        if self.workers:
            self._wait_worker(deadline)

    def _wait_worker(self, deadline: float) -> None:
        """Until a worker is online and its pool child is up (TensorFlow imported)."""
        import httpx

        headers = {"Authorization": f"Bearer {TOKEN}"}
        while time.monotonic() < deadline:
            try:
                seen = httpx.get(f"{self.url}/api/workers", headers=headers, timeout=5).json()
            except (httpx.HTTPError, ValueError):
                seen = []
            pools = [p for w in self.worker_pids for p in _children_map().get(w, [])]
            if seen and pools:
                time.sleep(2)  # the pool child's imports settle
                return
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        tree = [self.proc.pid, *descendants(self.proc.pid)]
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        for pid in tree:  # what is left of what this stack started
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.proc = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- hostile files, built by code ---------------------------------------------------------


def zeros_npz(path: Path, images: int) -> Path:
    """An npz of zeros declaring `images` 32x32x3 images (~1.2 MB for 400,000), written as a
    stream so this process never holds the array."""
    if path.exists():
        return path
    chunk = bytes(2**20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x_train.npy", "w", force_zip64=True) as fh:
            header = {"descr": "|u1", "fortran_order": False, "shape": (images, 32, 32, 3)}
            np.lib.format.write_array_header_1_0(fh, header)
            left = images * 32 * 32 * 3
            while left:
                fh.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
        for key, array in (
            ("y_train", np.zeros(images, np.int64)),
            ("x_test", np.zeros((1, 32, 32, 3), np.uint8)),
            ("y_test", np.zeros(1, np.int64)),
        ):
            buf = io.BytesIO()
            np.save(buf, array)
            zf.writestr(f"{key}.npy", buf.getvalue())
    return path


def long_names_npz(path: Path, classes: int, chars: int) -> Path:
    """`classes` class names of `chars` characters each (one image per class)."""
    if path.exists():
        return path
    names = np.array([f"{i:05d}" + "n" * (chars - 5) for i in range(classes)])
    x = np.zeros((classes, 32, 32, 3), np.uint8)
    y = np.arange(classes, dtype=np.int64)
    np.savez_compressed(path, x_train=x, y_train=y, x_test=x, y_test=y, class_names=names)
    return path


def tiny_npz() -> bytes:
    buf = io.BytesIO()
    x = np.zeros((4, 32, 32, 3), np.uint8)
    np.savez(
        buf, x_train=x, y_train=np.array([0, 1, 0, 1]), x_test=x, y_test=np.array([0, 1, 0, 1])
    )
    return buf.getvalue()


def multipart(path_file: str, data: bytes, boundary: str) -> bytes:
    return (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{path_file}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )


def fresh_client(url: str, timeout: float, **kw):
    """An httpx client that opens a new connection per request (a 500 raised in a middleware
    closes the connection; a kept-alive one would fail the next request)."""
    import httpx

    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.Client(base_url=url, timeout=timeout, limits=limits, **kw)


# --- the rows -------------------------------------------------------------------------------


@dataclass
class Ctx:
    """What a row gets: its stack, the seed's answer, a sampler, its record, the options."""

    stack: Stack
    seed: dict
    sampler: Sampler
    rec: dict
    args: argparse.Namespace
    files: Path
    deadline: float

    @property
    def url(self) -> str:
        return self.stack.url

    def client(self, **kw):

        headers = {"Authorization": f"Bearer {TOKEN}", **kw.pop("headers", {})}
        return fresh_client(self.url, self.args.cap, headers=headers, **kw)

    def answer(self, label: str, status: int | str) -> None:
        self.rec.setdefault("statuses", {})[label] = status


@dataclass
class Row:
    name: str
    what: str
    run: Callable[[Ctx], None]
    workers: int = 0
    seed: str = ""
    cap_arg: str = "cap"
    fields: list[str] = field(default_factory=list)


def _wait_import(ctx: Ctx, http, answer: dict) -> dict:
    """Poll the import's status URL until it is no longer pending."""
    url = answer.get("status_url") or f"/api/datasets/imports/{answer['import_id']}"
    while time.monotonic() < ctx.deadline:
        state = http.get(url).json()
        if state.get("state") not in (ImportPhase.PENDING, None):
            return state
        time.sleep(0.3)
    return {"state": ImportPhase.PENDING}


def _upload(ctx: Ctx, http, name: str, path: Path) -> dict:
    with path.open("rb") as fh:
        res = http.post(
            "/api/datasets/upload", params={"name": name}, files={"file": (path.name, fh)}
        )
    ctx.answer("upload", res.status_code)
    if res.status_code != 202:
        ctx.rec["fact"]["upload_answer"] = res.text[:300]
        return {}
    state = _wait_import(ctx, http, res.json())
    ctx.rec["fact"]["import_state"] = state.get("state")
    if state.get("state") == ImportPhase.FAILED:
        ctx.rec["fact"]["import_error"] = str(state.get("message") or state.get("detail"))[:300]
    return state


def row_zeros(ctx: Ctx) -> None:
    images = 4000 if ctx.args.quick else ctx.args.images
    path = zeros_npz(ctx.files / f"zeros-{images}.npz", images)
    ctx.rec["fact"]["upload_mb"] = round(path.stat().st_size / 2**20, 2)
    with ctx.client() as http:
        state = _upload(ctx, http, "zeros", path)
        if state.get("state") == ImportPhase.DONE:
            res = http.get("/api/datasets/zeros")
            ctx.rec["fact"]["dataset"] = {
                k: v for k, v in res.json().items() if k in ("n_train", "n_test", "size_bytes")
            }


def row_class_names(ctx: Ctx) -> None:
    classes, chars = (50, 2000) if ctx.args.quick else (1000, 60_000)
    path = long_names_npz(ctx.files / f"names-{classes}-{chars}.npz", classes, chars)
    fact = ctx.rec["fact"]
    fact["upload_kb"] = round(path.stat().st_size / 1024)
    with ctx.client() as http:
        state = _upload(ctx, http, "longnames", path)
        ctx.sampler.mark("after_import")
        began = time.perf_counter()
        res = http.get("/api/datasets")
        fact["api_datasets_s"] = round(time.perf_counter() - began, 2)
        fact["api_datasets_mb"] = round(len(res.content) / 2**20, 1)
        ctx.answer("GET /api/datasets", res.status_code)
        del res
        ctx.sampler.mark("after_one_list")
        if state.get("state") != ImportPhase.DONE:
            fact["note"] = "import not done: the lists below hold no long names"
        statuses: list[int | str] = []

        def one() -> None:
            try:
                with ctx.client() as own:
                    r = own.get("/api/datasets")
                    statuses.append(r.status_code)
            except Exception as err:
                statuses.append(type(err).__name__)

        began = time.perf_counter()
        threads = [threading.Thread(target=one, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(0.1, ctx.deadline - time.monotonic()))
        fact["api_datasets_x4_s"] = round(time.perf_counter() - began, 2)
        ctx.answer("GET /api/datasets x4", dict(Counter(map(str, statuses))))
        ctx.sampler.mark("after_x4")
        began = time.perf_counter()
        res = http.get("/runs/new")
        fact["runs_new_s"] = round(time.perf_counter() - began, 2)
        fact["runs_new_mb"] = round(len(res.content) / 2**20, 1)
        ctx.answer("GET /runs/new", res.status_code)
        ctx.sampler.mark("after_runs_new")


PAGES = (
    "/runs", "/api/runs", "/api/runs/table", "/runs/{id}", "/api/runs/table.csv",
    "/compare?ids={id},{other}", "/experiments/{root}", "/experiments/{root}/report.html",
)  # fmt: skip


def row_surrogate_tag(ctx: Ctx) -> None:
    rid = ctx.seed["run_id"]
    with ctx.client() as http:
        body = b'{"tags": ["ok", "\\udfff"]}'
        for target in (rid, ctx.seed["ids"][0]):  # a finetune and its pretrain (the report's)
            res = http.patch(
                f"/api/runs/{target}", content=body, headers={"Content-Type": "application/json"}
            )
            ctx.answer(f"PATCH tags {'finetune' if target == rid else 'pretrain'}", res.status_code)
        bad = 0
        for page in PAGES:
            root, _, other = ctx.seed["ids"]
            got = http.get(page.format(id=rid, root=root, other=other)).status_code
            ctx.answer(page.split("?")[0].replace("{id}", "ID").replace("{root}", "ID"), got)
            bad += got >= 500
        ctx.rec["fact"]["pages_500"] = f"{bad}/{len(PAGES)}"


def _valid_text(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def row_surrogate_name(ctx: Ctx) -> None:
    rid = ctx.seed["run_id"]
    echoed = 0
    with ctx.client() as http:
        for field_name in ("name", "notes"):
            body = b'{"%s": "x\\udfffy"}' % field_name.encode()
            res = http.patch(
                f"/api/runs/{rid}", content=body, headers={"Content-Type": "application/json"}
            )
            ctx.answer(f"PATCH {field_name}", res.status_code)
            echoed += b"\\udfff" in res.content or not _valid_text(res.content)
        body = b'{"kind": "pretrain", "dataset": "demo", "name": "x\\udfffy"}'
        res = http.post("/api/runs", content=body, headers={"Content-Type": "application/json"})
        ctx.answer("POST name", res.status_code)
        echoed += b"\\udfff" in res.content or not _valid_text(res.content)
    ctx.rec["fact"]["answers_echoing_it"] = echoed


def row_nul(ctx: Ctx) -> None:
    rid = ctx.seed["run_id"]
    with ctx.client() as http:
        for field_name, value in (("name", "a\x00b"), ("tags", ["t\x00"]), ("notes", "n\x00o")):
            res = http.patch(f"/api/runs/{rid}", json={field_name: value})
            ctx.answer(f"PATCH {field_name}", res.status_code)
        run = http.get(f"/api/runs/{rid}").json()
        stored = [k for k in ("name", "notes") if "\x00" in str(run.get(k) or "")]
        stored += ["tags"] if any("\x00" in t for t in run.get("tags") or []) else []
        csv = http.get("/api/runs/table.csv")
        ctx.answer("GET table.csv", csv.status_code)
    ctx.rec["fact"]["stored_with_nul"] = ",".join(stored) or "none"
    ctx.rec["fact"]["nul_in_csv"] = b"\x00" in csv.content


def row_cookie(ctx: Ctx) -> None:

    stamp = "9" * 4301
    cookie = f"v2.shared.{stamp}.{'0' * 64}"
    with fresh_client(ctx.url, ctx.args.cap) as http:
        bad = 0
        for path in ("/", "/runs", "/api/runs", "/datasets", "/api/health"):
            got = http.get(path, headers={"Cookie": f"stacklab_session={cookie}"}).status_code
            ctx.answer(path, got)
            bad += got >= 500
        ctx.rec["fact"]["routes_500"] = bad
        good = ctx.seed.get("cookie")
        if good:
            version, user, issued, sig = good.split(".", 3)
            padded = f"{version}.{user}.000{issued}.{sig}"
            got = http.get(
                "/api/runs", headers={"Cookie": f"stacklab_session={padded}"}
            ).status_code
            ctx.answer("padded stamp", got)
            ctx.rec["fact"]["zero_padded_accepted"] = got == 200
        else:
            ctx.rec["fact"]["zero_padded_accepted"] = ctx.seed.get("cookie_error", "n/a")[:80]


def row_throttle(ctx: Ctx) -> None:

    statuses: Counter = Counter()
    first_429 = None
    with fresh_client(ctx.url, ctx.args.cap) as http:
        for i in range(400):
            headers = {
                "Authorization": f"Bearer wrong-{i}",
                "X-Forwarded-For": f"10.{i // 250}.{i % 250}.7",
            }
            got = http.get("/api/runs", headers=headers).status_code
            statuses[got] += 1
            if got == 429 and first_429 is None:
                first_429 = i + 1
            ctx.rec["fact"]["tried"] = i + 1
    ctx.answer("400 wrong tokens", dict(statuses))
    ctx.rec["fact"]["got_429"] = first_429 is not None
    ctx.rec["fact"]["first_429_at"] = first_429


def _health_ms(url: str, timeout: float) -> float | str:
    import httpx

    began = time.perf_counter()
    try:
        httpx.get(f"{url}/api/health", timeout=timeout)
    except httpx.HTTPError as err:
        return type(err).__name__
    return round((time.perf_counter() - began) * 1000, 1)


def row_header(ctx: Ctx) -> None:
    size = (1 if ctx.args.quick else ctx.args.header_mb) * 2**20
    fact = ctx.rec["fact"]
    fact["health_before_ms"] = _health_ms(ctx.url, 5)
    done = threading.Event()
    timings: list[float] = []
    errors: list[str] = []

    def poll() -> None:
        while not done.is_set() and time.monotonic() < ctx.deadline:
            ms = _health_ms(ctx.url, max(1, ctx.deadline - time.monotonic()))
            if isinstance(ms, str):
                errors.append(ms)
            else:
                timings.append(ms)
            fact["health_max_ms"] = max(timings, default=None)
            fact["health_polls"] = len(timings)
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    began = time.perf_counter()
    poller.start()
    sock = socket.create_connection(("127.0.0.1", ctx.stack.port))
    sock.settimeout(max(1, ctx.deadline - time.monotonic()))
    status: int | str = "no answer"
    try:
        head = f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{ctx.stack.port}\r\nX-Big: "
        sock.sendall(head.encode())
        piece = b"a" * 65536
        sent = 0
        while sent < size:
            sock.sendall(piece[: min(len(piece), size - sent)])
            sent += min(len(piece), size - sent)
            fact["header_mb_sent"] = round(sent / 2**20, 1)
        sock.sendall(b"\r\n\r\n")
        first = sock.recv(200)
        status = int(first.split()[1]) if first.startswith(b"HTTP/") else "closed"
    except OSError as err:
        status = f"{type(err).__name__} after {fact.get('header_mb_sent', 0)} MB"
        with contextlib.suppress(OSError):  # a 431 may be waiting though the send failed
            first = sock.recv(200)
            if first.startswith(b"HTTP/"):
                status = int(first.split()[1])
    finally:
        sock.close()
    fact["big_request_s"] = round(time.perf_counter() - began, 2)
    ctx.answer(f"{size >> 20} MB header", status)
    time.sleep(0.3)  # one more health poll after the answer
    done.set()
    poller.join(timeout=max(0.1, ctx.deadline - time.monotonic()))
    if errors:
        fact["health_errors"] = dict(Counter(errors))


def row_multipart(ctx: Ctx) -> None:
    count = 20_000 if ctx.args.quick else ctx.args.fields
    boundary = "hostile" + secrets.token_hex(6)
    fact = ctx.rec["fact"]
    tail = multipart("tiny.npz", tiny_npz(), boundary)

    def blocks(n_per: int = 20_000):
        for start in range(0, count, n_per):
            yield "".join(
                f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n1\r\n'
                for i in range(start, min(count, start + n_per))
            ).encode()

    fixed = len(f'--{boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\n1\r\n')
    digits = sum(
        (min(count, 10**d) - 10 ** (d - 1) if d > 1 else min(count, 10)) * d
        for d in range(1, len(str(count)) + 1)
        if count > (10 ** (d - 1) if d > 1 else 0)
    )
    length = count * fixed + digits + len(tail)
    fact["body_mb"] = round(length / 2**20, 1)
    sock = socket.create_connection(("127.0.0.1", ctx.stack.port))
    sock.settimeout(max(1, ctx.deadline - time.monotonic()))
    status: int | str = "no answer"
    try:
        head = (
            "POST /api/datasets/upload?name=fields HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{ctx.stack.port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {length}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
        )
        sock.sendall(head.encode())
        sent = 0
        for block in blocks():
            sock.sendall(block)
            sent += block.count(b"\r\n\r\n")
            fact["fields_sent"] = sent
        sock.sendall(tail)
        first = sock.recv(200)
        status = int(first.split()[1]) if first.startswith(b"HTTP/") else "closed"
    except OSError as err:
        status = f"{type(err).__name__} after {fact.get('fields_sent', 0)} fields"
        with contextlib.suppress(OSError):
            first = sock.recv(200)
            if first.startswith(b"HTTP/"):
                status = int(first.split()[1])
    finally:
        sock.close()
    ctx.answer(f"{count:,} fields", status)


def row_table_csv(ctx: Ctx) -> None:
    fact = ctx.rec["fact"]
    fact["runs"] = ctx.seed.get("runs")
    results: list = []

    def one() -> None:
        try:
            with ctx.client() as own:
                r = own.get("/api/runs/table.csv")
                results.append((r.status_code, len(r.content)))
        except Exception as err:
            results.append((type(err).__name__, 0))

    threads = [threading.Thread(target=one, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.1, ctx.deadline - time.monotonic()))
    ctx.answer("table.csv x4", dict(Counter(str(s) for s, _ in results)))
    fact["csv_mb"] = round(max((n for _, n in results), default=0) / 2**20, 2)
    fact["answered"] = len(results)


def row_tune(ctx: Ctx) -> None:
    body = {
        "kind": "tune", "dataset": "demo", "parallel": 8, "name": "hostile tune",
        "params": {"n_trials": 1000, "epochs": 10},
    }  # fmt: skip
    with ctx.client() as http:
        res = http.post("/api/runs", json=body)
    ctx.answer("POST tune", res.status_code)
    planned = 0
    if res.status_code < 300:
        for run in res.json():
            params = run.get("params") or {}
            planned += int(params.get("n_trials", 0)) * int(params.get("epochs", 0))
        ctx.rec["fact"]["runs_created"] = len(res.json())
    else:
        ctx.rec["fact"]["refusal"] = res.text[:200]
    ctx.rec["fact"]["epochs_planned"] = planned


def row_evaluate(ctx: Ctx) -> None:
    rid = ctx.seed["run_id"]
    statuses: Counter = Counter()
    queued = 0
    lock = threading.Lock()

    def clicks(n: int) -> None:
        nonlocal queued
        with ctx.client() as http:
            for _ in range(n):
                res = http.post(f"/api/runs/{rid}/evaluate")
                with lock:
                    statuses[res.status_code] += 1
                    with contextlib.suppress(ValueError, AttributeError):
                        said = res.json()  # "already_queued": answered with the one queued
                        queued += bool(said.get("queued")) and not said.get("already_queued")
                    ctx.rec["fact"]["evaluate_tasks_queued"] = queued

    threads = [threading.Thread(target=clicks, args=(50,), daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.1, ctx.deadline - time.monotonic()))
    ctx.answer("300 evaluate", dict(statuses))
    with contextlib.suppress(Exception):
        import sqlite3

        db = sqlite3.connect(str(ctx.stack.data_dir / "queue.db"))
        ctx.rec["fact"]["messages_in_queue"] = db.execute(
            "SELECT count(*) FROM kombu_message WHERE visible = 1"
        ).fetchone()[0]
        db.close()


ROWS = [
    Row("zeros-400k", "1.2 MB npz of zeros declaring 400,000 images", row_zeros, 1,
        cap_arg="zeros_cap"),
    Row("class-names", "1,000 x 60,000-char class names; GET /api/datasets (x4), /runs/new",
        row_class_names, 1),
    Row("surrogate-tag", 'tag "\\udfff" via PATCH, then every list and page', row_surrogate_tag,
        seed="run"),
    Row("surrogate-name", "lone surrogate in name / notes (PATCH, POST)", row_surrogate_name,
        seed="run"),
    Row("nul", "NUL in name, tags, notes; then table.csv", row_nul, seed="run"),
    Row("cookie", "session cookie with a 4,301-digit issue time", row_cookie, seed="cookie"),
    Row("throttle", "400 wrong tokens, rotating X-Forwarded-For", row_throttle),
    Row("header-40mb", "one 40 MB header; /api/health timed meanwhile", row_header),
    Row("multipart-fields", "multipart upload with 4.5 million tiny fields", row_multipart),
    Row("table-csv", "table.csv over 10,000 runs, four at once", row_table_csv, seed="runs"),
    Row("tune", "one tune of 8 parts x 1,000 trials x 10 epochs", row_tune),
    Row("evaluate", '300 x "Evaluate now" on one stopped finetune', row_evaluate,
        seed="stopped"),
]  # fmt: skip


def run_row(row: Row, root: Path, args: argparse.Namespace, tmp: Path, files: Path) -> dict:
    cap = getattr(args, row.cap_arg)
    rec: dict = {"row": row.name, "fact": {}, "cap_s": cap}
    stack = Stack(root, row.workers, tmp)
    try:
        count = (200 if args.quick else args.csv_runs) if row.seed == "runs" else 1
        began = time.perf_counter()
        seed = stack.setup(row.seed, count)
        rec["setup_s"] = round(time.perf_counter() - began, 1)
        stack.start()
        db_before = sqlite_mb(stack.data_dir)
        sampler = Sampler(stack.web_pid, stack.worker_pids)
        ctx = Ctx(stack, seed, sampler, rec, args, files, time.monotonic() + cap)
        errors: list[BaseException] = []

        def body() -> None:
            try:
                row.run(ctx)
            except BaseException as err:  # reported in the row, the bench goes on
                errors.append(err)

        began = time.perf_counter()
        worker = threading.Thread(target=body, daemon=True)
        worker.start()
        worker.join(timeout=cap)
        rec["wall_s"] = round(time.perf_counter() - began, 2)
        rec["stopped"] = worker.is_alive()
        rec.update(sampler.stop())
        rec["sqlite_growth_mb"] = round(sqlite_mb(stack.data_dir) - db_before, 1)
        if errors:
            rec["error"] = f"{type(errors[0]).__name__}: {str(errors[0])[:200]}"
    except Exception as err:
        rec["error"] = f"{type(err).__name__}: {str(err)[:300]}"
    finally:
        stack.stop()  # a frozen row's stack goes with it; the next row starts a fresh one
        if not args.keep:
            import shutil

            shutil.rmtree(stack.data_dir, ignore_errors=True)
    return rec


# --- output ---------------------------------------------------------------------------------


def _fmt_statuses(statuses: dict) -> str:
    parts = []
    for value in statuses.values():
        if isinstance(value, dict):
            value = "/".join(f"{k}x{v}" for k, v in value.items())
        parts.append(f"{value}")
    return " ".join(parts)


def _fmt_fact(fact: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in fact.items())


def print_table(results: dict[str, list[dict]]) -> None:
    labels = list(results)
    print(f"{'row':<17} {'code':<6} {'wall s':>9} {'web +MB':>8} {'web cpu s':>9} "
          f"{'workers +MB':>11} {'sqlite +MB':>10}  answers | fact")  # fmt: skip
    for row in ROWS:
        for label in labels:
            recs = [r for r in results[label] if r["row"] == row.name]
            if not recs:
                continue
            r = recs[0]
            wall = (
                f"> {r['cap_s']:g}" if r.get("stopped") else f"{r.get('wall_s', float('nan')):.2f}"
            )
            workers = r.get("worker_growth_mb") or {}
            wk = max(workers.values(), default=0.0) if workers else "-"
            name = row.name if label == labels[0] else ""
            print(
                f"{name:<17} {label:<6} {wall:>9} {r.get('web_growth_mb', '-'):>8} "
                f"{r.get('web_cpu_s', '-'):>9} {wk:>11} "
                f"{r.get('sqlite_growth_mb', '-'):>10}  {_fmt_statuses(r.get('statuses', {}))}"
                f" | {_fmt_fact(r['fact'])}"
                + (" (stopped)" if r.get("stopped") else "")
                + (f" ERROR {r['error']}" if r.get("error") else "")
            )
            if r.get("web_marks_mb"):
                print(f"{'':<17} {'':<6} web growth by phase: {r['web_marks_mb']}")
            if workers:
                print(f"{'':<17} {'':<6} worker growth by process: {workers}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=HERE, help="checkout to measure")
    parser.add_argument("--before-root", type=Path, help="old checkout, measured first")
    parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    parser.add_argument("--cap", type=float, default=60, help="seconds per row")
    parser.add_argument("--zeros-cap", type=float, default=120, help="seconds, 400k-image row")
    parser.add_argument("--images", type=int, default=400_000)
    parser.add_argument("--fields", type=int, default=4_500_000, help="multipart fields")
    parser.add_argument("--header-mb", type=int, default=40)
    parser.add_argument("--csv-runs", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="small inputs: a smoke run")
    parser.add_argument("--keep", action="store_true", help="keep each row's data dir")
    args = parser.parse_args()

    wanted = [r for r in args.rows.split(",") if r] or [r.name for r in ROWS]
    unknown = set(wanted) - {r.name for r in ROWS}
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    roots = {"before": args.before_root} if args.before_root else {}
    roots["after" if args.before_root else "root"] = args.root
    results: dict[str, list[dict]] = {label: [] for label in roots}
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp_name:
        tmp = Path(tmp_name)
        files = tmp / "files"
        files.mkdir()
        for row in ROWS:
            if row.name not in wanted:
                continue
            for label, root in roots.items():
                rec = run_row(row, root.resolve(), args, tmp, files)
                results[label].append(rec)
                print(f"# {label} {row.name}: {json.dumps(rec)}", file=sys.stderr, flush=True)
    print_table(results)
    out = {
        "bench": "hostile_inputs",
        "roots": {label: str(root) for label, root in roots.items()},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
