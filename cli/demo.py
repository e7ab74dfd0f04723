"""`stacklab demo`: the seed's whole workflow, headless, on the built-in demo data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import configs, jobs, options, summaries
from cli.errors import user_errors

# The demo's folders and summary sections are named after the kinds it runs: a pretrain
# folder, and one finetune folder per variant, "<finetune>-<variant>".
VARIANTS = {"plain": False, "augment": True}  # variant -> augmentation on


@dataclass(frozen=True)
class Plan:
    """How big a demo run is."""

    n_train: int | None
    n_test: int | None
    stage_epochs: int
    finetune_epochs: int
    batch_size: int
    bn_momentum: float


# Quick: a few minutes on 2 CPU cores. BatchNorm momentum 0.9 because a few hundred
# batches are too few for Keras' 0.99 to settle, which would leave test scores at chance.
QUICK = Plan(n_train=1500, n_test=500, stage_epochs=2, finetune_epochs=4, batch_size=64,
             bn_momentum=0.9)  # fmt: skip
FULL = Plan(n_train=None, n_test=None, stage_epochs=10, finetune_epochs=50, batch_size=128,
            bn_momentum=0.99)  # fmt: skip

QUICK_NOTE = "Quick run: 4 epochs only show that the workflow runs; compare with --full (GPU)."
DEMO_HELP = (
    "Run the whole workflow on the built-in demo data: layer-wise pretraining, then a "
    "stacked classifier finetuned without and with augmentation, then a comparison table. "
    "Default --quick: 1500 train / 500 test images, 2 epochs per pretrain stage, 4 finetune "
    "epochs per run, about 6 minutes on 2 CPU cores (scores that early only show that the "
    "workflow runs). --full: all 5000 / 1000 images, 10 epochs per stage, up to 50 finetune "
    "epochs with early stopping (patience 5); meant for a GPU."
)


def demo(
    out: options.Out,
    quick: Annotated[
        bool, typer.Option("--quick/--full", help="Small and fast, or the full demo dataset.")
    ] = True,
    seed: options.Seed = 0,
    mixed_precision: options.MixedPrecision = False,
    jit_compile: options.JitCompile = False,
) -> None:
    """Run the whole workflow on the demo data: pretrain, finetune plain and augmented."""
    from jobspec.builtin_kinds import FINETUNE, PRETRAIN  # here: --help loads no pydantic

    plan = QUICK if quick else FULL
    runtime = configs.runtime(mixed_precision, jit_compile)
    with user_errors():
        pretrain_config = _pretrain_config(plan, seed, runtime)
        finetune_configs = {
            f"{FINETUNE.name}-{variant}": _finetune_config(plan, seed, runtime, augment)
            for variant, augment in VARIANTS.items()
        }
        dataset = jobs.load_data("demo", train_limit=plan.n_train, test_limit=plan.n_test)
    summary: dict[str, Any] = {"command": "demo", "quick": quick, "cancelled": False}
    summary["dataset"] = summaries.dataset_brief(dataset)
    pretrained = out / PRETRAIN.name
    summary[PRETRAIN.name] = _pretrain(dataset, pretrain_config, pretrained)
    summary["cancelled"] = summary[PRETRAIN.name]["cancelled"]
    finetuned: dict[str, dict] = {}
    summary[FINETUNE.name] = finetuned
    for name, config in finetune_configs.items():
        if summary["cancelled"]:
            break
        finetuned[name] = _finetune(dataset, config, out / name, pretrained)
        summary["cancelled"] = finetuned[name]["cancelled"]
    steps = [summary[PRETRAIN.name], *finetuned.values()]
    summary["seconds"] = round(sum(step["seconds"] for step in steps), 1)
    lines = comparison_lines(summary, pretrains=PRETRAIN.name, finetunes=FINETUNE.name)
    summaries.finish(out, summary, lines)


def _pretrain_config(plan: Plan, seed: int, runtime: dict) -> Any:
    stages = {"epochs": str(plan.stage_epochs), "batch_size": str(plan.batch_size)}
    return configs.pretrain_config(
        stages=stages, bn_momentum=plan.bn_momentum, seed=seed, runtime=runtime
    )


def _finetune_config(plan: Plan, seed: int, runtime: dict, augment: bool) -> Any:
    return configs.finetune_config(
        aug=[],
        early_stopping={"patience": 5},
        encoder="stacked",
        augment=augment,
        epochs=plan.finetune_epochs,
        batch_size=plan.batch_size,
        bn_momentum=plan.bn_momentum,
        seed=seed,
        runtime=runtime,
    )


def _pretrain(dataset: Any, config: Any, out_dir: Path) -> dict:
    """Pretrain step: run, record its summary.json, print its table."""
    typer.secho(f"== {out_dir.name} (AE01 -> AE02 -> AE03)", bold=True)
    result, seconds = jobs.pretrain(dataset, config, out_dir)
    summary = summaries.pretrain_summary(result, dataset, seconds, out_dir)
    summaries.record(out_dir, summary, summaries.pretrain_lines(summary))
    return summary


def _finetune(dataset: Any, config: Any, out_dir: Path, pretrained: Path) -> dict:
    """One finetune step: run, record its summary.json, print its scores."""
    typer.secho(f"== {out_dir.name} (stacked encoder, augment={config.augment})", bold=True)
    result, seconds = jobs.finetune(dataset, config, out_dir, pretrained)
    summary = summaries.finetune_summary(result, dataset, seconds, out_dir)
    summaries.record(out_dir, summary, summaries.finetune_lines(summary))
    return summary


def comparison_lines(summary: dict, *, pretrains: str, finetunes: str) -> list[str]:
    """The table the demo ends with: one row per run in the summary's `finetunes` section."""
    rows = []
    for name, run in summary[finetunes].items():
        scores = run["evaluation"] or {}
        training = run["training"]
        rows.append([
            name,
            summaries.number(scores.get("accuracy")),
            summaries.number(scores.get("balanced_accuracy")),
            training.get("best_epoch") or "-",
            training["epochs_run"],
            summaries.duration(run["seconds"]),
        ])  # fmt: skip
    return [
        "",
        f"demo {'stopped' if summary['cancelled'] else 'finished'} after "
        f"{summaries.duration(summary['seconds'])}",
        *summaries.table(["run", "test acc", "balanced acc", "best epoch", "epochs", "time"], rows),
        f"pretrained autoencoders: {summary[pretrains]['out_dir']}",
        *([QUICK_NOTE] if summary["quick"] else []),
    ]
