"""Wall-clock images/s of our finetune (all callbacks, validation) vs a bare model.fit.

The baseline trains the way the seed's notebooks did: `model.fit` on float NumPy arrays
with validation_data. Ours is `worker.ml.finetune.finetune`, with its progress reporter,
early stopping and the repeating tf.data pipeline. Same model (stacked classifier from
scratch), same data, same batch size and epochs, alternated in one process.

    python bench/train_overhead.py [--train 768] [--epochs 3] [--repeats 2]

Last line of stdout: one JSON object with the figures, including "ratio" (ours / bare).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402

from jobspec.params import EarlyStoppingConfig, FinetuneConfig  # noqa: E402
from worker.ml.datasets.load import load_dataset  # noqa: E402
from worker.ml.finetune import finetune  # noqa: E402
from worker.ml.models import build_stacked_classifier  # noqa: E402
from worker.ml.reporting import Reporter  # noqa: E402
from worker.ml.training import make_optimizer  # noqa: E402


class StepTimer(keras.callbacks.Callback):
    """Time spent inside training steps only, to separate step speed from epoch overhead."""

    def __init__(self):
        super().__init__()
        self.step_seconds = 0.0
        self.steps = 0

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step_seconds += time.perf_counter() - self._t
        self.steps += 1


def bare_fit(ds, split, *, epochs: int, batch_size: int, seed: int) -> dict:
    """The seed's way: model.fit on float arrays, validation_data, nothing else."""
    keras.utils.set_random_seed(seed)
    model = build_stacked_classifier(3, ds.num_classes)
    model.compile(
        optimizer=make_optimizer("adam", 1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x = split.x_train.astype("float32") / 255.0
    xv = split.x_val.astype("float32") / 255.0
    timer = StepTimer()
    start = time.perf_counter()
    model.fit(
        x,
        split.y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(xv, split.y_val),
        callbacks=[timer],
        verbose=0,
    )
    seconds = time.perf_counter() - start
    return _rates(len(x), epochs, batch_size, seconds, timer)


def ours(ds, *, epochs: int, batch_size: int, seed: int, out_dir: Path) -> dict:
    """Our finetune with everything it does per batch and per epoch."""
    config = FinetuneConfig(
        encoder="scratch",
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        early_stopping=EarlyStoppingConfig(patience=epochs),
    )
    reporter = _TimedReporter()
    result = finetune(ds, config, out_dir=out_dir, reporter=reporter)
    seconds = result.training["seconds"]
    n_train = reporter.images
    return _rates(n_train, epochs, batch_size, seconds, reporter)


class _TimedReporter(Reporter):
    """Counts step time from the progress it receives (one call per batch)."""

    def __init__(self):
        self.images = 0
        self.step_seconds = 0.0
        self.steps = 0
        self._last = None

    def stage_started(self, stage, *, epochs, steps, images):
        self.images = images

    def batch_ended(self, progress):
        now = time.perf_counter()
        if self._last is not None and progress.step > 1:
            self.step_seconds += now - self._last
            self.steps += 1
        self._last = now


def _rates(n_train, epochs, batch_size, seconds, timer) -> dict:
    per_step = timer.steps * batch_size / timer.step_seconds if timer.step_seconds else 0.0
    return {
        "seconds": seconds,
        "epoch_img_s": n_train * epochs / seconds,
        "step_img_s": per_step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=768, help="training images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    ds = load_dataset("demo").subset(n_train=args.train + args.train // 8, n_test=200, seed=0)
    split = ds.split_validation(fraction=1 / 9, seed=0)
    # Warm-up: TensorFlow's first graph build in a process is not what we measure.
    bare_fit(ds, split, epochs=1, batch_size=args.batch, seed=0)
    runs = {"bare": [], "ours": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            runs["bare"].append(
                bare_fit(ds, split, epochs=args.epochs, batch_size=args.batch, seed=rep)
            )
            runs["ours"].append(
                ours(
                    ds,
                    epochs=args.epochs,
                    batch_size=args.batch,
                    seed=rep,
                    out_dir=Path(tmp) / f"run{rep}",
                )
            )
    best = {name: max(r, key=lambda r: r["epoch_img_s"]) for name, r in runs.items()}
    _print_table(runs, args)
    ratio = best["ours"]["epoch_img_s"] / best["bare"]["epoch_img_s"]
    print(f"\nratio (ours / bare, per epoch, best of {args.repeats}): {ratio:.3f}")
    print(
        json.dumps(
            {
                "bench": "train_overhead",
                "model": "stacked_classifier",
                "backend": keras.backend.backend(),
                "train_images": len(split.x_train),
                "epochs": args.epochs,
                "batch_size": args.batch,
                "bare_epoch_img_s": round(best["bare"]["epoch_img_s"], 2),
                "ours_epoch_img_s": round(best["ours"]["epoch_img_s"], 2),
                "bare_step_img_s": round(best["bare"]["step_img_s"], 2),
                "ours_step_img_s": round(best["ours"]["step_img_s"], 2),
                "ratio": round(ratio, 3),
            }
        )
    )


def _print_table(runs, args) -> None:
    print(f"{'path':<6} {'rep':>3} {'seconds':>8} {'img/s epoch':>12} {'img/s step':>11}")
    for name, results in runs.items():
        for rep, r in enumerate(results):
            print(
                f"{name:<6} {rep:>3} {r['seconds']:>8.2f} {r['epoch_img_s']:>12.1f} "
                f"{r['step_img_s']:>11.1f}"
            )


if __name__ == "__main__":
    main()
