"""Cost of a checkpoint per epoch: capture, serialize and write it to SQLite, vs epoch time.

Two finetune runs of the stacked classifier (scratch, Adam) on the same demo data, in one
process and alternated: one with a reporter that wants no checkpoints (what the CLI pays),
one whose reporter takes a Checkpoint after every epoch, serializes it with to_bytes() and
replaces one BLOB row of an SQLite table in a temp file (WAL, synchronous=NORMAL, as the
store's SQLite), committed each epoch.

    python bench/resume_overhead.py [--train 768] [--epochs 3] [--batch 64] [--repeats 1]
                                    [--page-size 4096]

Per-epoch wall time runs from the end of one epoch's reporting (checkpoint handled) to the
next; the first epoch (graph building) is left out of the steady-state figures. The
overhead is reported two ways: the timed checkpoint work the training thread waits for,
over the baseline epoch (precise; "overhead_pct"), and the difference of the two runs'
epoch times (noisy on a shared CPU). --link-thread hands serialize + write to a second
thread, as worker/recorder.py does; then the training thread waits only for the capture.
Last line of stdout: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402

from jobspec.params import EarlyStoppingConfig, FinetuneConfig  # noqa: E402
from worker.ml.datasets.load import load_dataset  # noqa: E402
from worker.ml.finetune import finetune  # noqa: E402
from worker.ml.reporting import Reporter  # noqa: E402


class EpochClock(Reporter):
    """Wall time of each epoch, its reporting included; wants no checkpoints."""

    def __init__(self):
        self.marks: list[float] = []
        self.epoch_done = 0.0
        self.steps: list[float] = []  # seconds of each step but the first of an epoch
        self._last_step = 0.0

    def stage_started(self, stage, *, epochs, steps, images):
        self.marks = [time.perf_counter()]

    def batch_ended(self, progress):
        now = time.perf_counter()
        if progress.step > 1:  # the first step of an epoch also waits for its data
            self.steps.append(now - self._last_step)
        self._last_step = now

    def epoch_ended(self, stage, epoch, metrics):
        self.epoch_done = time.perf_counter()
        self.mark()

    def mark(self) -> None:
        self.marks.append(time.perf_counter())

    def epoch_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


class SQLiteCheckpoints(EpochClock):
    """Serializes every checkpoint and replaces one BLOB row with it, committed.

    With link_thread, as worker/recorder.py does, the training thread only hands the
    Checkpoint over and a second thread serializes and writes it.
    """

    def __init__(self, path: Path, page_size: int, *, link_thread: bool = False):
        super().__init__()
        self.path = path
        db = sqlite3.connect(path)
        db.execute(f"PRAGMA page_size={page_size:d}")  # before the first table
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE checkpoint (run_id INTEGER PRIMARY KEY, data BLOB)")
        db.close()
        self.parts: dict[str, list[float]] = {"capture": [], "serialize": [], "write": []}
        self.sizes: list[int] = []
        self.queue: queue.Queue | None = None
        if link_thread:
            self.queue = queue.Queue()
            self.thread = threading.Thread(target=self._link, daemon=True)
            self.thread.start()
        else:
            self.db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def epoch_ended(self, stage, epoch, metrics):
        self.epoch_done = time.perf_counter()  # the mark comes once the checkpoint is handled

    def wants_checkpoints(self) -> bool:
        return True

    def checkpoint(self, checkpoint) -> None:
        # Between epoch_ended and this call, the core copied the variables: the capture.
        self.parts["capture"].append(time.perf_counter() - self.epoch_done)
        if self.queue is not None:
            self.queue.put(checkpoint)
        else:
            self._write(checkpoint, self.db)
        self.mark()

    def _write(self, checkpoint, db: sqlite3.Connection) -> None:
        begin = time.perf_counter()
        data = checkpoint.to_bytes()
        serialized = time.perf_counter()
        db.execute("INSERT OR REPLACE INTO checkpoint VALUES (1, ?)", (data,))
        db.commit()
        self.parts["serialize"].append(serialized - begin)
        self.parts["write"].append(time.perf_counter() - serialized)
        self.sizes.append(len(data))

    def _link(self) -> None:
        db = self._connect()
        while (checkpoint := self.queue.get()) is not None:
            self._write(checkpoint, db)
        db.close()

    def close(self) -> None:
        if self.queue is None:
            self.db.close()
            return
        self.queue.put(None)
        self.thread.join()


def run_once(ds, reporter: EpochClock, *, epochs: int, batch_size: int, out_dir: Path) -> dict:
    config = FinetuneConfig(
        encoder="scratch",
        epochs=epochs,
        batch_size=batch_size,
        early_stopping=EarlyStoppingConfig(patience=epochs),
        validation_fraction=1 / 9,  # as bench/train_overhead.py: --train images train
    )
    finetune(ds, config, out_dir=out_dir, reporter=reporter)
    seconds = reporter.epoch_seconds()
    steady = seconds[1:] or seconds
    result = {
        "epoch_s": statistics.mean(steady),
        "first_epoch_s": seconds[0],
        "step_ms": 1000 * statistics.median(reporter.steps),
    }
    if isinstance(reporter, SQLiteCheckpoints):
        reporter.close()
        result |= {f"{k}_ms": 1000 * statistics.mean(v) for k, v in reporter.parts.items()}
        result["size_mb"] = max(reporter.sizes) / 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=768, help="training images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--page-size", type=int, default=4096, help="SQLite page size (4096 is its default)"
    )
    parser.add_argument(
        "--link-thread",
        action="store_true",
        help="serialize and write on a second thread, as worker/recorder.py does",
    )
    args = parser.parse_args()

    ds = load_dataset("demo").subset(n_train=args.train + args.train // 8, n_test=200, seed=0)
    runs: dict[str, list[dict]] = {"plain": [], "checkpoint": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Warm-up: TensorFlow's first graph build in a process is not what we measure.
        warm = ds.subset(n_train=min(144, len(ds.y_train)), n_test=20, seed=0)
        run_once(warm, EpochClock(), epochs=1, batch_size=args.batch, out_dir=tmp / "warm")
        for rep in range(args.repeats):
            order = ["plain", "checkpoint"] if rep % 2 == 0 else ["checkpoint", "plain"]
            for name in order:
                reporter = (
                    EpochClock()
                    if name == "plain"
                    else SQLiteCheckpoints(
                        tmp / f"ck{rep}.db", args.page_size, link_thread=args.link_thread
                    )
                )
                runs[name].append(
                    run_once(
                        ds,
                        reporter,
                        epochs=args.epochs,
                        batch_size=args.batch,
                        out_dir=tmp / f"{name}{rep}",
                    )
                )
    _report(runs, args)


def _report(runs: dict[str, list[dict]], args) -> None:
    plain = min(r["epoch_s"] for r in runs["plain"])
    ck = min(runs["checkpoint"], key=lambda r: r["epoch_s"])
    parts_ms = ck["capture_ms"] + ck["serialize_ms"] + ck["write_ms"]
    direct = 100 * parts_ms / 1000 / plain
    # What the training thread waits for; with a link thread the rest runs beside it.
    waited_ms = ck["capture_ms"] if args.link_thread else parts_ms
    overhead = 100 * waited_ms / 1000 / plain
    measured = 100 * (ck["epoch_s"] - plain) / plain
    print(f"{'run':<11} {'rep':>3} {'epoch s':>8} {'1st epoch s':>12} {'step ms':>8}")
    for name, results in runs.items():
        for rep, r in enumerate(results):
            print(
                f"{name:<11} {rep:>3} {r['epoch_s']:>8.2f} {r['first_epoch_s']:>12.2f} "
                f"{r['step_ms']:>8.0f}"
            )
    print(f"\ncheckpoint size        {ck['size_mb']:8.1f} MB")
    for part in ("capture", "serialize", "write"):
        print(f"{part:<22} {ck[part + '_ms']:8.1f} ms")
    print(f"all parts              {parts_ms:8.1f} ms = {direct:.2f} % of a {plain:.2f} s epoch")
    where = "training thread waits" if args.link_thread else "training thread waits (all)"
    print(f"{where:<22} {waited_ms:8.1f} ms = {overhead:.2f} %")
    print(f"epoch time difference  {measured:+8.2f} % (noisy: includes run-to-run jitter;")
    print("                                   compare the median step times above)")
    print(
        json.dumps(
            {
                "bench": "resume_overhead",
                "model": "stacked_classifier",
                "backend": keras.backend.backend(),
                "train_images": args.train,
                "epochs": args.epochs,
                "batch_size": args.batch,
                "sqlite_page_size": args.page_size,
                "link_thread": args.link_thread,
                "checkpoint_mb": round(ck["size_mb"], 2),
                "capture_ms": round(ck["capture_ms"], 1),
                "serialize_ms": round(ck["serialize_ms"], 1),
                "write_ms": round(ck["write_ms"], 1),
                "plain_step_ms": round(min(r["step_ms"] for r in runs["plain"]), 1),
                "checkpoint_step_ms": round(ck["step_ms"], 1),
                "plain_epoch_s": round(plain, 3),
                "checkpoint_epoch_s": round(ck["epoch_s"], 3),
                "training_thread_ms": round(waited_ms, 1),
                "overhead_pct": round(overhead, 2),
                "all_parts_pct": round(direct, 2),
                "measured_difference_pct": round(measured, 2),
                # Other processes on the same cores make the epoch times noisy.
                "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
