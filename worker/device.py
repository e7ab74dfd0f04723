"""What this worker computes on, and the one-time framework import.

GPU detection for `stacklab serve --gpus` asks `nvidia-smi -L`, never TensorFlow: the
process that starts workers (and Celery's main process) must not import it. A CPU-lane
worker (imports, "evaluate now") never imports it at start and sees no GPU.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
from functools import lru_cache

from jobspec.scheduling import Lane

# Set by `stacklab serve --gpus` / `stacklab worker --gpu N` (e.g. "gpu0"): the worker's
# name in the queue panel starts with it.
NAME_VARIABLE = "STACKLAB_WORKER_NAME"
# The worker's lane ("training", the default, or "cpu"): which work it claims and reports.
LANE_VARIABLE = "STACKLAB_WORKER_LANE"
_GPU_LINE = re.compile(r"^GPU (\d+):", re.MULTILINE)


class GpuSpecError(ValueError):
    """--gpus names devices this machine does not have, or is not all/none/N,M."""


def detect_gpus() -> list[str]:
    """The GPU indices `nvidia-smi -L` lists ("0", "1", ...); [] without it or a driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return _GPU_LINE.findall(out.stdout) if out.returncode == 0 else []


def choose_gpus(spec: str, detected: list[str]) -> list[str]:
    """The devices of --gpus: "all" (those detected), "none", or a list like "0,1"."""
    spec = spec.strip().lower()
    if spec in ("none", ""):
        return []
    if spec == "all":
        return list(detected)
    wanted = [part.strip() for part in spec.split(",") if part.strip()]
    bad = [g for g in wanted if not g.isdigit()]
    if bad:
        raise GpuSpecError(f"--gpus: expected all, none or indices like 0,1; got {spec!r}")
    missing = [g for g in wanted if g not in detected]
    if missing:
        found = ", ".join(detected) or "none"
        raise GpuSpecError(f"--gpus: no GPU {', '.join(missing)} here (nvidia-smi lists {found})")
    return list(dict.fromkeys(wanted))


def gpu_env(index: str | None) -> dict[str, str]:
    """The environment of a worker pinned to one GPU (or, for None, to none: CPU)."""
    if index is None:
        return {"CUDA_VISIBLE_DEVICES": "", NAME_VARIABLE: "cpu"}
    return {"CUDA_VISIBLE_DEVICES": index, NAME_VARIABLE: f"gpu{index}"}


def lane() -> Lane:
    """This worker's lane, from STACKLAB_WORKER_LANE (default: training); ValueError
    naming the lanes for anything else."""
    value = os.environ.get(LANE_VARIABLE, "").strip().lower() or Lane.TRAINING.value
    try:
        return Lane(value)
    except ValueError:
        known = ", ".join(lane.value for lane in Lane)
        raise ValueError(f"{LANE_VARIABLE}={value!r}: expected one of {known}") from None


def hide_gpus_on_cpu_lane() -> None:
    """A CPU-lane worker sees no GPU: set before anything could import TensorFlow (the
    Celery main process, so its pool children inherit it)."""
    if lane() is Lane.CPU:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def prepare() -> None:
    """Import Keras (and its backend) once; let TensorFlow grow GPU memory as needed. A
    CPU-lane worker imports nothing here: "evaluate now" loads Keras on first use."""
    if lane() is Lane.CPU:
        hide_gpus_on_cpu_lane()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            # RuntimeError: already initialised, too late and harmless.
            with contextlib.suppress(RuntimeError):
                tf.config.experimental.set_memory_growth(gpu, True)


@lru_cache
def describe() -> str:
    """e.g. "GPU:0 NVIDIA H200" or "CPU (16 cores)" (a CPU-lane worker: without Keras)."""
    if lane() is Lane.CPU:
        return f"CPU ({os.cpu_count()} cores)"
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            # Pinned by CUDA_VISIBLE_DEVICES, TensorFlow's GPU:0 is the machine's GPU N.
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip() or "0"
            return f"GPU:{visible} {details.get('device_name', 'GPU')}" + (
                f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
            )
    return f"CPU ({os.cpu_count()} cores)"


def has_gpu() -> bool:
    """Whether this worker trains on a GPU (the framework sees one): the pool child only."""
    return describe().startswith("GPU")


@lru_cache
def gpu_memory_mb() -> int | None:
    """Total memory of the GPU this worker trains on, in MB, as `nvidia-smi` reports it
    for the first device CUDA_VISIBLE_DEVICES leaves visible; None without one (a
    CPU-lane worker, no driver, or devices hidden)."""
    if lane() is Lane.CPU:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = (visible.split(",")[0].strip() if visible is not None else "0") or None
    exe = shutil.which("nvidia-smi")
    if exe is None or first is None or first.startswith("-"):
        return None
    query = [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", first]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
    try:
        return int(float(lines[0])) if lines else None
    except ValueError:  # "[N/A]" and the like
        return None


@lru_cache
def versions() -> dict[str, str]:
    """Versions that decide what a run computed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in (
        "stacklab",
        "keras",
        "tensorflow",
        "tensorflow-cpu",
        "numpy",
        "optuna",
        "jax",
        "torch",
    ):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    import keras

    out["keras_backend"] = keras.backend.backend()
    return out


def worker_name() -> str:
    """host:pid, unique per worker process; name@host:pid for a named one (gpu0@host:pid)."""
    label = os.environ.get(NAME_VARIABLE, "").strip()
    where = f"{platform.node()}:{os.getpid()}"
    return f"{label}@{where}" if label else where
