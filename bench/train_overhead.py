"""Wall-clock images/s of our finetune (all callbacks, validation) vs a bare model.fit.

The baseline trains the way the seed's notebooks did: `model.fit` on float NumPy arrays
with validation_data. Ours is `worker.ml.finetune.finetune`, with its progress reporter,
early stopping and the repeating tf.data pipeline. Same model (stacked classifier from
scratch), same data, same batch size and epochs, alternated in one process.

    python bench/train_overhead.py [--size small|seed|both] [--repeats 3]

Each size prints a row per run with the seconds spent in each part of the fit (see
`breakdown`). Last line of stdout: one JSON object with the figures per size, including
"ratio" (ours / bare, best epoch img/s) and each repeat's ratio and their spread.
"""

from __future__ import annotations

import argparse
import itertools
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


class Timeline(keras.callbacks.Callback):
    """Timestamps of every hook; one goes first in the callback list and one last, so the
    gaps between them split an epoch into step, callbacks, validation and boundary."""

    def __init__(self, events: list, role: str):
        super().__init__()
        self.events, self.role = events, role

    def _mark(self, name):
        self.events.append((self.role, name, time.perf_counter()))

    def on_train_begin(self, logs=None):
        self._mark("train_begin")

    def on_train_end(self, logs=None):
        self._mark("train_end")

    def on_epoch_begin(self, epoch, logs=None):
        self._mark("epoch_begin")

    def on_epoch_end(self, epoch, logs=None):
        self._mark("epoch_end")

    def on_train_batch_begin(self, batch, logs=None):
        self._mark("batch_begin")

    def on_train_batch_end(self, batch, logs=None):
        self._mark("batch_end")

    def on_test_begin(self, logs=None):
        if self.role == "first":  # validation is one span, not split by the callbacks
            self._mark("test_begin")

    def on_test_end(self, logs=None):
        if self.role == "first":
            self._mark("test_end")


_PARTS = {
    (("last", "batch_begin"), ("first", "batch_end")): "step",
    (("first", "batch_begin"), ("last", "batch_begin")): "callbacks",
    (("first", "batch_end"), ("last", "batch_end")): "callbacks",
    (("first", "epoch_end"), ("last", "epoch_end")): "callbacks",
    (("first", "test_begin"), ("first", "test_end")): "validation",
    (("last", "batch_end"), ("first", "batch_begin")): "loop",
}


def breakdown(events: list) -> dict[str, float]:
    """Seconds per part of the fit, from consecutive timestamps: step (compute, and any
    input wait, which happens inside the step), callbacks (ours, Reporter included),
    validation, loop (between steps) and boundary (the rest: epoch starts and ends inside
    Keras, iterators, validation set-up and tear-down)."""
    parts = dict.fromkeys(("step", "callbacks", "validation", "loop", "boundary"), 0.0)
    worst = (0.0, "")
    for (role0, name0, t0), (role1, name1, t1) in itertools.pairwise(events):
        part = _PARTS.get(((role0, name0), (role1, name1)), "boundary")
        parts[part] += t1 - t0
        if part != "step" and t1 - t0 > worst[0]:
            worst = (t1 - t0, f"{role0}.{name0} -> {role1}.{name1}")
        if part != "step" and t1 - t0 > 0.5:
            print(f"  gap {t1 - t0:.3f} s ({part}): {role0}.{name0} -> {role1}.{name1}")
    parts["longest_gap"] = worst[0]
    return parts


def _with_timeline(events: list):
    """worker.ml.finetune's fit, with Timeline callbacks around ours (bench only)."""
    import worker.ml.finetune as ft
    from worker.ml import training

    def fit(model, *, callbacks=(), **kwargs):
        first, last = Timeline(events, "first"), Timeline(events, "last")
        original = training.ReporterCallback

        class Bridge(original):  # the Reporter's bridge, then the last timeline
            def on_train_batch_begin(self, batch, logs=None):
                super().on_train_batch_begin(batch, logs)
                last.on_train_batch_begin(batch, logs)

            def on_train_batch_end(self, batch, logs=None):
                super().on_train_batch_end(batch, logs)
                last.on_train_batch_end(batch, logs)

            def on_epoch_end(self, epoch, logs=None):
                super().on_epoch_end(epoch, logs)
                last.on_epoch_end(epoch, logs)

        training.ReporterCallback = Bridge
        events.append(("fit", "call", time.perf_counter()))
        try:
            return training.fit(model, callbacks=[first, *callbacks], **kwargs)
        finally:
            events.append(("fit", "return", time.perf_counter()))
            training.ReporterCallback = original

    ft.fit = fit


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
    events: list = []
    start = time.perf_counter()
    events.append(("fit", "call", start))
    model.fit(
        x,
        split.y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(xv, split.y_val),
        callbacks=[Timeline(events, "first"), Timeline(events, "last")],
        verbose=0,
    )
    events.append(("fit", "return", time.perf_counter()))
    return _rates(len(x), epochs, time.perf_counter() - start, events)


def ours(ds, *, epochs: int, batch_size: int, seed: int, out_dir: Path) -> dict:
    """Our finetune with everything it does per batch and per epoch."""
    config = FinetuneConfig(
        encoder="scratch",
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        early_stopping=EarlyStoppingConfig(patience=epochs),
    )
    events: list = []
    _with_timeline(events)
    result = finetune(ds, config, out_dir=out_dir, reporter=Reporter())
    n_train = len(
        ds.split_validation(fraction=config.validation_fraction, seed=config.split).x_train
    )
    return _rates(n_train, epochs, result.training["seconds"], events)


def _rates(n_train: int, epochs: int, seconds: float, events: list) -> dict:
    parts = breakdown(events)
    return {
        "seconds": seconds,
        "epoch_img_s": n_train * epochs / seconds,
        "step_img_s": n_train * epochs / parts["step"],
        "parts": parts,
    }


def run_size(train: int, epochs: int, batch: int, repeats: int) -> dict:
    """Bare fit and ours alternated `repeats` times at one size; the figures for its JSON."""
    ds = load_dataset("demo").subset(n_train=train + train // 8, n_test=200, seed=0)
    split = ds.split_validation(fraction=1 / 9, seed=0)
    # Warm-up: TensorFlow's first graph build in a process is not what we measure.
    bare_fit(ds, split, epochs=1, batch_size=batch, seed=0)
    runs: dict[str, list[dict]] = {"bare": [], "ours": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            runs["bare"].append(bare_fit(ds, split, epochs=epochs, batch_size=batch, seed=rep))
            out = Path(tmp) / f"run{rep}"
            runs["ours"].append(ours(ds, epochs=epochs, batch_size=batch, seed=rep, out_dir=out))
    print(f"\n{train} training images, {epochs} epochs, batch {batch}, {repeats} repeats")
    _print_table(runs)
    best = {name: max(r["epoch_img_s"] for r in rs) for name, rs in runs.items()}
    ratios = [
        o["epoch_img_s"] / b["epoch_img_s"] for o, b in zip(runs["ours"], runs["bare"], strict=True)
    ]
    ours_eff = [r["epoch_img_s"] / r["step_img_s"] for r in runs["ours"]]
    print(f"ratio ours/bare per repeat: {', '.join(f'{r:.3f}' for r in ratios)}")
    return {
        "train_images": len(split.x_train),
        "epochs": epochs,
        "batch_size": batch,
        "repeats": repeats,
        "bare_epoch_img_s": round(best["bare"], 2),
        "ours_epoch_img_s": round(best["ours"], 2),
        "ours_step_img_s": round(max(r["step_img_s"] for r in runs["ours"]), 2),
        "ours_epoch_over_step": [round(e, 3) for e in ours_eff],
        "ratio": round(best["ours"] / best["bare"], 3),
        "ratios": [round(r, 3) for r in ratios],
        "ratio_spread": round((max(ratios) - min(ratios)) / max(ratios), 3),
        "ours_parts_s": {k: round(v, 3) for k, v in runs["ours"][-1]["parts"].items()},
        "bare_parts_s": {k: round(v, 3) for k, v in runs["bare"][-1]["parts"].items()},
    }


SIZES = {"small": (768, 3, 64), "seed": (2048, 5, 128)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=[*SIZES, "both"], default="both")
    parser.add_argument("--train", type=int, help="training images (overrides --size)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    names = list(SIZES) if args.size == "both" else [args.size]
    figures = {}
    for name in names:
        train, epochs, batch = SIZES[name]
        figures[name] = run_size(
            args.train or train, args.epochs or epochs, args.batch or batch, args.repeats
        )
    print(json.dumps({"bench": "train_overhead", "backend": keras.backend.backend(), **figures}))


def _print_table(runs: dict[str, list[dict]]) -> None:
    parts = list(next(iter(runs.values()))[0]["parts"])
    head = f"{'path':<5} {'rep':>3} {'seconds':>8} {'img/s ep':>9} {'img/s step':>10}"
    print(head + "".join(f" {p:>10}" for p in parts))
    for name, results in runs.items():
        for rep, r in enumerate(results):
            row = f"{name:<5} {rep:>3} {r['seconds']:>8.2f} {r['epoch_img_s']:>9.1f} "
            row += f"{r['step_img_s']:>10.1f}"
            print(row + "".join(f" {r['parts'][p]:>10.3f}" for p in parts))


if __name__ == "__main__":
    main()
