"""A tune run's Optuna study: its runs, trials, best trial and Optuna's own plots."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import plotting
from jobspec import kinds
from jobspec.builtin_kinds import PRETRAIN
from jobspec.params import DEFAULT_LEARNING_RATES, QUICK_FIELDS, StageConfig
from jobspec.stages import AE01, STAGES
from jobspec.status import TrialState
from store.datasets import service as datasets_service
from store.errors import NotFound
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from store.runs.models import Run
from store.settings import get_settings

if TYPE_CHECKING:
    import optuna

# optuna.visualization names; Optuna (and the matplotlib its plots pull in, ~40 MB) is
# imported on the first study page, not when the web starts.
PLOTS = {
    "history": "plot_optimization_history",
    "importances": "plot_param_importances",
    "slice": "plot_slice",
    "contour": "plot_contour",
    "intermediate": "plot_intermediate_values",
}
STAGE_KEYS = ("kernel_size", "optimizer", "learning_rate")


@lru_cache(maxsize=4)
def _storage(url: str) -> optuna.storages.RDBStorage:
    # One engine per database for the process; upgrade_schema created Optuna's tables.
    import optuna

    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, skip_table_creation=True)


def study_runs(session: Session, run_id: int) -> list[Run]:
    """The tune run and every run sharing its study (parallel workers), by id."""
    run = runs_service.get_run(session, run_id)
    if not kinds.features(run.kind).study:
        raise NotFound("tune run", f"{run_id} (it is a {run.kind} run)")
    if not run.study_name:
        return [run]
    runs = list(
        session.scalars(select(Run).where(Run.study_name == run.study_name).order_by(Run.id))
    )
    # A stored name read back with a character replaced (store/text_column.py) finds no run.
    return runs if any(r.id == run.id for r in runs) else [run]


def load_study(study_name: str | None) -> optuna.Study | None:
    """The study from Optuna's tables in our database, or None before a worker creates it."""
    if not study_name:
        return None
    import optuna

    try:
        return optuna.load_study(
            study_name=study_name, storage=_storage(get_settings().sqlalchemy_url)
        )
    except KeyError:
        return None


def trial_rows(session: Session, runs: list[Run], study: optuna.Study | None) -> list[dict]:
    """Recorded trials (with the run that ran each) plus any Optuna trial still running."""
    names = {run.id: run.name for run in runs}
    rows = [
        {
            "number": t.number,
            "params": t.params,
            "value": t.value,
            "state": t.state,
            "seconds": t.seconds,
            "intermediate": _steps(t.intermediate),
            "pruned_at": _pruned_at(t.state, t.intermediate),
            "run_id": t.run_id,
            "run_name": names.get(t.run_id),
        }
        for t in metrics_service.trials_of(session, list(names))
    ]
    seen = {row["number"] for row in rows}
    for t in study.get_trials(deepcopy=False) if study else []:
        if t.number not in seen and not t.state.is_finished():
            rows.append(
                {
                    "number": t.number,
                    "params": dict(t.params),
                    "value": None,
                    "state": TrialState.of(t.state),
                    "seconds": None,
                    "intermediate": _steps(t.intermediate_values),
                    "pruned_at": None,  # still running
                    "run_id": None,
                    "run_name": None,
                }
            )
    return sorted(rows, key=lambda row: row["number"])


def _pruned_at(state: str, values: Mapping[Any, float] | None) -> int | None:
    """The epoch a pruned trial was stopped after (its last reported one; 0: before any),
    None for a trial that was not pruned: the page labels its value by this, not as final."""
    if state != TrialState.PRUNED:
        return None
    steps = _steps(values)
    return int(steps[-1][0]) if steps else 0


def _steps(values: Mapping[Any, float] | None) -> list[list[float]]:
    """A trial's intermediate values as [[epoch, value], ...] by epoch (JSON keys are text)."""
    return sorted([int(step), value] for step, value in (values or {}).items())


def best_trial(rows: list[dict]) -> dict | None:
    """The completed trial with the lowest value (the studies minimise validation loss)."""
    done = [r for r in rows if r["state"] == TrialState.COMPLETE and r["value"] is not None]
    if not done:
        return None
    best = dict(min(done, key=lambda r: r["value"]))
    params = dict(best["params"])
    if "learning_rate" not in params and params.get("optimizer") in DEFAULT_LEARNING_RATES:
        params["learning_rate"] = DEFAULT_LEARNING_RATES[params["optimizer"]]
    return best | {"params": params}


# A tune's own settings that mean the same in a pretrain (the split it validated on too).
CARRIED = ("bn_momentum", "validation_fraction", "seed", *QUICK_FIELDS, "runtime")
STAGE_FIELDS = tuple(StageConfig.model_fields)


def pretrain_params(session: Session, run: Run, best: dict | None) -> dict | None:
    """A pretrain's parameters from a tune: the best trial's kernel size, optimizer and
    learning rate for the tuned stage; the tune's epochs and batch size for it and the
    stages after; stages before it as the pretrain the tune built on trained them; the
    tune's BN momentum, validation fraction, seeds, quick-run limits and runtime."""
    if best is None:
        return None
    tune = run.params or {}
    stage = tune.get("stage", AE01)
    params = {key: tune[key] for key in CARRIED if tune.get(key) is not None}
    if "split_seed" in tune or "seed" in tune:  # validate on the images the tune did
        split = tune.get("split_seed")
        params["split_seed"] = tune.get("seed", 0) if split is None else split
    parent = _parent(session, run)
    if parent is not None and parent.params.get("decoder_output"):
        params["decoder_output"] = parent.params["decoder_output"]
    for name in STAGES:
        if parent is not None and STAGES.index(name) < STAGES.index(stage):
            source = parent.params.get(name) or {}
        else:
            source = tune
        settings = {key: source[key] for key in STAGE_FIELDS if source.get(key) is not None}
        if name == stage:
            settings |= {key: best["params"][key] for key in STAGE_KEYS if key in best["params"]}
        if settings:
            params[name] = settings
    return params


def _parent(session: Session, run: Run) -> Run | None:
    """The pretrain whose frozen encoders an AE02/AE03 tune trained on, if it still exists."""
    if run.parent_run_id is None:
        return None
    parent = session.get(Run, run.parent_run_id)
    return parent if parent is not None and kinds.features(parent.kind).experiment_root else None


def pretrain_request(session: Session, run: Run, best: dict | None) -> dict | None:
    """The POST /api/runs body of a pretrain with the study's settings (see pretrain_params),
    naming the tune as its source."""
    params = pretrain_params(session, run, best)
    if params is None:
        return None
    return {
        "kind": PRETRAIN.name,
        "dataset": datasets_service.get(session, run.dataset_id).name,
        "name": f"pretrain from {run.study_name or run.name}"[:200],
        "params": params,
        "source_run_id": run.id,
    }


def pretrain_review(session: Session, run_id: int) -> dict:
    """What the review form needs: the pretrain's values, name and data set, and the study
    they come from (NotFound until a trial has completed: there are no settings yet)."""
    runs = study_runs(session, run_id)
    run = next(r for r in runs if r.id == run_id)
    best = best_trial(trial_rows(session, runs, load_study(run.study_name)))
    request = pretrain_request(session, run, best)
    if request is None or best is None:  # no best trial: no request either
        raise NotFound("best trial of study", run.study_name or run_id)
    stage = run.params.get("stage", AE01)
    return {
        "kind": PRETRAIN.name,
        "values": request["params"],
        "prefill": {"name": request["name"], "tags": "", "dataset": request["dataset"]},
        "review": {
            "run_id": run.id,
            "name": run.study_name or run.name,
            "stage": stage,
            "trial": best["number"],
            "parent": run.parent_run_id if _parent(session, run) is not None else None,
            "settings": {k: best["params"][k] for k in STAGE_KEYS if k in best["params"]},
        },
    }


def version(study: optuna.Study | None) -> str:
    """Changes whenever a trial starts, reports an epoch or finishes: figures are stale."""
    if study is None:
        return "none"
    parts = [
        f"{t.number}:{t.state.name}:{len(t.intermediate_values)}"
        for t in study.get_trials(deepcopy=False)
    ]
    return hashlib.sha1(",".join(parts).encode()).hexdigest()[:16]


# What a plot needs before it can show anything: completed trials, parameters that vary.
NEEDS = {"importances": (2, 1), "contour": (3, 2), "slice": (1, 0), "history": (1, 0)}


def varying(done: list[optuna.trial.FrozenTrial]) -> list[str]:
    """The parameters that take two or more values over the completed trials."""
    names = sorted({name for t in done for name in t.params})
    return [n for n in names if len({repr(t.params.get(n)) for t in done}) > 1]


def plot_missing(name: str, done: list[optuna.trial.FrozenTrial]) -> str | None:
    """Why a plot of the completed trials would be empty or meaningless, or None."""
    if name not in NEEDS:
        return None
    trials, params = NEEDS[name]
    moving = varying(done)
    if len(done) >= trials and len(moving) >= params:
        return None
    what = PLOT_TITLES[name]
    over = f" over {params}+ parameters that take different values" if params else ""
    return (
        f"{what} needs at least {trials} finished trial{'s' if trials > 1 else ''}{over}: "
        f"{len(done)} finished so far, {len(moving)} parameter{'s' if len(moving) != 1 else ''} "
        f"varying{' (' + ', '.join(moving) + ')' if moving else ''}."
    )


def importance_missing(study: optuna.Study) -> str | None:
    """Why parameter importances cannot be computed yet, or None when they can."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return plot_missing("importances", list(done))


PLOT_TITLES = {
    "history": "Optimization history",
    "importances": "Parameter importances",
    "slice": "Slice",
    "contour": "Contour",
    "intermediate": "Intermediate values",
}


def figures(study: optuna.Study | None) -> tuple[dict[str, dict], dict[str, str]]:
    """({plot: figure JSON}, {plot: why it is missing}) for the study's plots: Optuna's own,
    and the intermediate values drawn here (each line named by its trial, pruned marked)."""
    if study is None:
        reason = "The study has not started yet: no trial has been run."
        return {}, {name: reason for name in PLOTS}
    import optuna
    import optuna.visualization as vis

    figs, missing = {}, {}
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if any(t.intermediate_values for t in trials):
        figs["intermediate"] = intermediate_figure(trials)
    else:
        missing["intermediate"] = "No trial has reported a per-epoch value yet."
    for name, plot_name in PLOTS.items():
        if name == "intermediate":
            continue
        if not done:
            missing[name] = f"{PLOT_TITLES[name]} needs a finished trial: none has completed yet."
            continue
        if why := plot_missing(name, done):
            missing[name] = why
            continue
        plot = getattr(vis, plot_name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna warns about experimental/empty plots
            fig = plot(study)
        if not fig.data:
            missing[name] = _empty_reason(name)
            continue
        fig.update_layout(title=None, margin={"l": 50, "r": 20, "t": 20, "b": 40}, height=360)
        # plotly's encoder handles numpy; Optuna's hover text keeps its line breaks
        figs[name] = plotting.escape_figure(json.loads(fig.to_json()), keep_breaks=True)
    return figs, missing


def intermediate_figure(trials: list[optuna.trial.FrozenTrial]) -> dict:
    """Each trial's validation loss per epoch, one line per trial named "trial N" (legend
    and hover); a pruned trial's line dotted and its last value marked as pruned, since it
    is where the pruner stopped it, not a final value."""
    data: list[dict[str, Any]] = []
    last = 1
    colours = plotting.template()["layout"]["colorway"]
    for t in trials:
        if not t.intermediate_values:
            continue
        colour = colours[t.number % len(colours)]
        state = TrialState.of(t.state)
        steps = sorted(t.intermediate_values.items())
        last = max(last, steps[-1][0])
        pruned = state == TrialState.PRUNED
        name = f"trial {t.number}" + (" (pruned)" if pruned else "")
        hover = f"trial {t.number}, {state}<br>epoch %{{x}}: %{{y:.4g}}<extra></extra>"
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "legendgroup": f"trial-{t.number}",
                "x": [step for step, _ in steps],
                "y": [value for _, value in steps],
                "line": {"color": colour, **({"dash": "dot"} if pruned else {})},
                "marker": {"size": 5, "color": colour},
                "hovertemplate": hover,
                "meta": {"trial": t.number, "state": state.value},
            }
        )
        if pruned:
            step, value = steps[-1]
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers+text",
                    "name": f"trial {t.number} pruned at epoch {step}",
                    "legendgroup": f"trial-{t.number}",
                    "showlegend": False,
                    "x": [step],
                    "y": [value],
                    "text": [TrialState.PRUNED.value],
                    "textposition": "top center",
                    "marker": {"symbol": "x", "size": 11, "color": colour},
                    "textfont": {"color": colour},
                    "hovertemplate": (
                        f"trial {t.number} pruned at epoch {step}: %{{y:.4g}} (an intermediate "
                        "value, not a final one)<extra></extra>"
                    ),
                    "meta": {"trial": t.number, "state": state.value, "pruned_at": step},
                }
            )
    layout: dict[str, Any] = {
        "margin": {"l": 50, "r": 20, "t": 20, "b": 40},
        "height": 360,
        "showlegend": True,
        "legend": {"title": {"text": "trials"}},
        "xaxis": plotting.epoch_axis(last),
        "yaxis": {"title": {"text": "validation loss"}},
        "hovermode": "closest",
    }
    return plotting.figure(data, layout)


def _empty_reason(name: str) -> str:
    return f"{PLOT_TITLES[name]}: Optuna drew nothing for these trials."


def is_live(runs: list[Run]) -> bool:
    """True while any run of the study is queued or running."""
    return any(run.status.is_active for run in runs)


def study_view(session: Session, run_id: int, known_version: str | None = None) -> dict:
    """Everything the study page shows; figures only when they changed since known_version."""
    runs = study_runs(session, run_id)
    run = next(r for r in runs if r.id == run_id)
    study = load_study(run.study_name)
    rows = trial_rows(session, runs, study)
    best = best_trial(rows)
    current = version(study)
    view = {
        "run_id": run.id,
        "study_name": run.study_name,
        "stage": run.params.get("stage", AE01),
        "direction": "minimize",
        "live": is_live(runs),
        "runs": [
            {"id": r.id, "name": r.name, "status": r.status, "worker_host": r.worker_host}
            for r in runs
        ],
        "trials": rows,
        "best": best,
        "pretrain_request": pretrain_request(session, run, best),
        "pretrain_form": f"/studies/{run.id}/pretrain" if best else None,
        "version": current,
        "plot_titles": PLOT_TITLES,
        "figures": None,
        "missing": None,
    }
    if known_version != current:
        view["figures"], view["missing"] = figures(study)
    return view
