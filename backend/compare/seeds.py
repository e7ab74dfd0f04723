"""Runs that differ only by seed and one parameter (a study's arms, a sweep repeated over
seeds), grouped by that parameter with each score's mean ± sd over the seeds."""

from __future__ import annotations

from collections.abc import Callable

from backend.compare import stats
from store.runs.models import Run

# Parameters that only replicate a run (init, data order, split): never a group's label.
SEED_KEYS = frozenset({"seed", "split_seed"})
MAX_GROUP_KEYS = 3  # more parameters than this changing at once is not a seed study


ARM_TAGS = ("arm:", "augment:")  # how a study tags its runs (older studies: augment:on)


def group_runs(runs: list[Run], params: list[dict]) -> tuple[list[str], list[dict]] | None:
    """(the parameters the runs are grouped by, the groups in order of first appearance);
    None when the seeds do not vary or no value of the other parameters repeats. The runs
    of one study are grouped by their arm."""
    arms = study_arms(runs)
    if arms is not None:
        by, groups = ["arm"], _groups(runs, lambda run: {"arm": arms[run.id]})
    else:
        differ = [row for row in params if row["differs"]]
        if not any(row["key"] in SEED_KEYS for row in differ):
            return None
        rows = [row for row in differ if row["key"] not in SEED_KEYS]
        if len(rows) > MAX_GROUP_KEYS:
            return None
        by = [row["key"] for row in rows]
        groups = _groups(
            runs, lambda run: {r["key"]: _text(r["values"][str(run.id)]) for r in rows}
        )
    if all(len(group["runs"]) < 2 for group in groups):
        return None
    return by, groups


def study_arms(runs: list) -> dict[int, str] | None:
    """Run id -> its arm, when every run belongs to one study (group) and says its arm."""
    if len({run.group_id for run in runs}) != 1 or runs[0].group_id is None:
        return None
    arms = {}
    for run in runs:
        tag = next((t for t in run.tags or [] if str(t).startswith(ARM_TAGS)), None)
        if tag is None:
            return None
        arms[run.id] = str(tag).split(":", 1)[1]
    return arms if len(set(arms.values())) > 1 else None


def _groups(runs: list[Run], values_of: Callable[[Run], dict[str, str]]) -> list[dict]:
    """Runs by the values `values_of(run)` gives, in order of first appearance."""
    groups: dict[tuple, dict] = {}
    for run in runs:
        values = values_of(run)
        group = groups.setdefault(tuple(values.items()), {"values": values, "runs": []})
        group["runs"].append(run)
    return list(groups.values())


def _text(value: object) -> str:
    """A parameter's value as the compare table writes it."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def seed_groups(
    runs: list[Run], params: list[dict], tables: list[tuple[list[dict], str]]
) -> dict | None:
    """The grouping and, per score row of `tables` ((rows, the cell field to read)), each
    group's mean ± sd; None when the runs are not seed replicates of a few settings."""
    found = group_runs(runs, params)
    if found is None:
        return None
    by, groups = found
    columns = [_column(str(index), group) for index, group in enumerate(groups)]
    rows = [
        _row(line, field, columns)
        for lines, field in tables
        for line in lines
        if line.get("scored", True)
    ]
    sizes = {column["n"] for column in columns}
    note = (
        f"mean ± sd over {sizes.pop()} seeds"
        if len(sizes) == 1
        else "mean ± sd over each group's seeds (n in each cell)"
    )
    return {"by": by, "note": note, "groups": columns, "rows": [r for r in rows if r["cells"]]}


def _column(key: str, group: dict) -> dict:
    runs = group["runs"]
    label = ", ".join(f"{k} = {v}" for k, v in group["values"].items()) or "all runs"
    return {
        "key": key,
        "label": label,
        "values": group["values"],
        "run_ids": [run.id for run in runs],
        "seeds": sorted({int((run.params or {}).get("seed", run.seed)) for run in runs}),
        "n": len(runs),
    }


def _row(line: dict, field: str, columns: list[dict]) -> dict:
    cells = {}
    for column in columns:
        values = [
            line["cells"][str(run_id)][field]
            for run_id in column["run_ids"]
            if str(run_id) in line["cells"]
        ]
        if values:
            cells[column["key"]] = stats.mean_sd(values)
    best = None
    if line.get("scored", True):  # a tie for the best mean bolds nobody
        means = {key: cell["mean"] for key, cell in cells.items()}
        best = stats.single_best(means, goal=line["goal"], percent=line.get("percent", False))
    return {
        "key": line["key"],
        "label": line.get("label") or line["key"],
        "goal": line["goal"],
        "percent": line.get("percent", False),
        "cells": cells,
        "best_group": best,
    }
