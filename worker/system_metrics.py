"""System metrics of a running job, sampled every few seconds as the run's time series.

Each reading goes to `Reporter.sampled(seconds, values)`, seconds since the job started on
this worker (a retried attempt starts again at 0; the store keeps each attempt's readings
apart): run samples, never epochs, so no epoch reader (progress, kept epoch, compare,
exports) ever sees them. The keys:

    rss_mb       resident memory of the process that trains (the pool child), MiB
    cpu_percent  its CPU time over the interval, percent of one core (200 = 2 cores)
    gpu_util     GPU utilisation, percent (NVML; absent without a GPU or NVML)
    gpu_mem_mb   GPU memory in use on the device, MiB (idem)

Process figures come from /proc (Linux; absent elsewhere). NVML comes from the optional
`nvidia-ml-py` package (module `pynvml`), imported lazily: a CPU-only worker has no GPU
series and no error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rss_mb(pid: int | str = "self") -> float | None:
    """Resident memory (VmRSS) in MiB, or None where /proc cannot tell."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int | str = "self") -> float | None:
    """User + system CPU time of a process, seconds (fields 14 and 15 of /proc/pid/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, ValueError, IndexError):
        return None


class Gpu:
    """NVML's view of the GPU this process is pinned to; `None` from open() without one."""

    def __init__(self, nvml, handle):
        self.nvml, self.handle = nvml, handle

    @classmethod
    def open(cls) -> Gpu | None:
        try:
            import pynvml as nvml
        except ImportError:
            return None
        try:
            nvml.nvmlInit()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
            if visible in ("", "-1"):
                return None  # hidden from this process: a CPU worker
            if visible.isdigit():
                handle = nvml.nvmlDeviceGetHandleByIndex(int(visible))
            else:
                handle = nvml.nvmlDeviceGetHandleByUUID(visible)
            return cls(nvml, handle)
        except Exception as err:  # no driver, no device: a CPU worker
            log.debug("no GPU metrics: %s", err)
            return None

    def sample(self) -> dict[str, float]:
        try:
            util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
            used = self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used
        except Exception as err:
            log.debug("GPU sample failed: %s", err)
            return {}
        return {"gpu_util": float(util), "gpu_mem_mb": used / 2**20}


class Sampler:
    """Samples this process (and its GPU) every `interval` seconds into reporter.sampled.

    clock: a monotonic clock (tests pass one they move by hand)."""

    def __init__(self, reporter, interval: float, *, clock: Callable[[], float] = time.monotonic):
        self.reporter, self.interval, self.clock = reporter, interval, clock
        self.gpu = Gpu.open()
        self.started = clock()
        self._last = (self.started, cpu_seconds())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="system-metrics", daemon=True)

    def sample(self) -> dict[str, float]:
        """One sample now; the CPU percentage is over the time since the previous one."""
        now, cpu = self.clock(), cpu_seconds()
        values: dict[str, float] = {}
        rss = rss_mb()
        if rss is not None:
            values["rss_mb"] = round(rss, 1)
        then, cpu_then = self._last
        if cpu is not None and cpu_then is not None and now - then >= 0.5:
            values["cpu_percent"] = round(100 * (cpu - cpu_then) / (now - then), 1)
        self._last = (now, cpu)
        if self.gpu is not None:
            values |= self.gpu.sample()
        return values

    def record(self) -> None:
        """Take one sample and hand it to the reporter, at whole seconds since the start."""
        values = self.sample()
        if values:
            self.reporter.sampled(float(int(self.clock() - self.started)), values)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.record()
            except Exception:  # a sample is never a reason to disturb the training
                log.debug("system sample failed", exc_info=True)

    def start(self) -> None:
        self.record()  # at 0 s: even a job shorter than the interval has one sample
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self.record()  # the last figures, unless this second already has a sample


@contextlib.contextmanager
def sampling(reporter, interval: float) -> Iterator[Sampler | None]:
    """Sample while the block runs (interval 0: off)."""
    if interval <= 0:
        yield None
        return
    sampler = Sampler(reporter, interval)
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()
