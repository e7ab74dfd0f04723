"""The new-run form, generated from the jobspec models' JSON schema (one field per parameter).

A field is a plain dict the template renders: inputs are named by their dotted path under
"params" (e.g. "params.ae01.kernel_size") so a 422's detail[].loc maps straight onto them.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import ValidationError
from sqlalchemy.orm import Session

from backend.datasets import listing
from backend.deps import launched_by
from jobspec import ablations, kind_names, kinds, presets
from jobspec.labels import label
from jobspec.params import FinetuneConfig
from jobspec.scheduling import PRIORITY_MAX, PRIORITY_MIN
from store.runs import seeds as study_seeds
from store.runs import service as runs_service
from store.runs.schemas import RunRead
from store.settings import get_settings

# The form's own kind: a group of finetunes (POST /api/ablations), not a job kind (no kind
# may take its name or its old one: jobspec.kind_names).
STUDY_KIND = kind_names.STUDY_FORM
STUDY_NO_PARENT = "none (encoder: scratch; not for studies of pretraining, encoder or freezing)"
LEGACY_KINDS = kind_names.LEGACY_FORM_TABS  # the tab's old name, in links people kept
STUDY_HELP = (
    "One factor switched between two arms, the same finetune otherwise, once per seed, "
    "as one group; the group page says whether the factor helped, hurt or is inconclusive."
)
# The parameter a factor's arms set themselves: hidden on the form while it is chosen.
FACTOR_SETS = {
    "augmentation": "augment",
    "encoder": "encoder",
    "class_weights": "class_weights",
    "freeze_encoder": "freeze_encoder",
}


def form_kinds() -> tuple[str, ...]:
    """A tab per registered job kind, then the ablation study."""
    return (*kinds.names(), STUDY_KIND)


def __getattr__(name: str):
    # FORM_KINDS stays importable and live: it reads the registry each time.
    if name == "FORM_KINDS":
        return form_kinds()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def kind_title(kind: str) -> str:
    """The tab's title."""
    return "Ablation study" if kind == STUDY_KIND else kinds.get(kind).label


def parent_picker(kind: str) -> dict[str, str] | None:
    """The parent-run picker's label and empty option, as the kind declares (None: none)."""
    if kind == STUDY_KIND:
        return {"label": "Pretrained weights", "empty": STUDY_NO_PARENT}
    found = kinds.features(kind)
    if found.parent_label is None:
        return None
    return {"label": found.parent_label, "empty": found.no_parent_label}


def default_kind(*, has_parent: bool) -> str:
    """The tab a plain /runs/new opens: the first kind, or with ?parent= the first whose
    default parameters load stages from a parent."""
    names = kinds.names()
    if has_parent:
        return next((k for k in names if _needs_parent(kinds.get(k))), names[0])
    return names[0]


def _needs_parent(kind: kinds.JobKind[Any]) -> bool:
    config = kind.config({})
    return config is not None and bool(kind.parents(config))


def kind_help(kind: str) -> str:
    """One line under the tab on what the job does (its model's docstring)."""
    return STUDY_HELP if kind == STUDY_KIND else kinds.get(kind).help


def study_controls() -> dict:
    """The study's own choices (factor, metric, seeds, split), rendered by the template
    before the shared finetune fields; default_metric names "auto"'s pick per data set."""
    return {
        "kind": "study",
        "path": "study",
        "factors": [
            {
                "name": f.name,
                "label": f.label,
                "question": f.question,
                "note": f.note,
                "arms": f"{f.baseline.label} vs {f.treatment.label}",
                "needs_parent": f.needs_parent,
                "sets": f"params.{FACTOR_SETS[f.name]}" if f.name in FACTOR_SETS else "",
            }
            for f in ablations.FACTORS.values()
        ],
        "metrics": [{"name": k, "label": v} for k, v in ablations.STUDY_METRICS.items()],
        "default_metric": ablations.default_metric,
        # a listed data set shows some class counts only: whether its test set (where the
        # study scores) is imbalanced is kept; the launcher decides the same way
        "default_metric_of": lambda d: "balanced_accuracy" if d.test_imbalanced else "accuracy",
        "seeds": str(study_seeds.DEFAULT_SEED_COUNT),  # a count: seeds 0 to n - 1
        "max_seeds": get_settings().max_seeds,
    }


# Fields whose input maximum is a limit of work (backend/runs/limits.py), by setting.
LIMITED = {"epochs": "max_epochs", "batch_size": "max_batch_size", "n_trials": "max_trials"}
# The study sets these per run itself (the split seed is one of its own choices).
STUDY_OMITS = {"seed", "split_seed"}


def model_for(kind: str):
    """The jobspec model whose parameters a form kind edits."""
    return FinetuneConfig if kind == STUDY_KIND else kinds.get(kind).params


def build_fields(kind: str, values: dict | None = None) -> list[dict]:
    """The form's fields for a kind, prefilled with values (defaults where absent)."""
    schema = model_for(kind).model_json_schema()
    if kind != STUDY_KIND:
        return _fields(schema, schema, "params", values or {}, set())
    return [study_controls(), *_fields(schema, schema, "params", values or {}, STUDY_OMITS)]


def preset_kind(kind: str) -> str:
    """The job kind whose presets a form kind offers (a study's arms are finetunes)."""
    return ablations.RUN_KIND if kind == STUDY_KIND else kind


def form_presets(kind: str, values: dict | None = None) -> list[dict]:
    """The presets a form kind offers (jobspec.presets), each with the value it gives every
    field presets set, by input name ("params.ae01.epochs"), and whether the form's values
    (defaults where absent) are that preset's: `active` on at most one."""
    source = preset_kind(kind)
    try:
        current = model_for(kind).model_validate(values or {}).model_dump(mode="json")
    except ValidationError:  # a clone of a run stored under older rules: no preset claimed
        current = None
    out = []
    for name in presets.of(source):
        sets = presets.values(source, name)
        info = presets.INFO[name]
        out.append(
            {
                "name": name.value,
                "label": info.label,
                "note": info.note,
                "summary": ", ".join(_describe(path, value) for path, value in sets.items()),
                "sets": {f"params.{path}": value for path, value in sets.items()},
                "active": current is not None
                and all(_at(current, path) == value for path, value in sets.items()),
            }
        )
    return out


def _describe(path: str, value: Any) -> str:
    """ "ae01.epochs", 2 -> "AE01 epochs 2"; an empty cap reads "all"."""
    words = " ".join(label(part) for part in path.split("."))
    return f"{words} {'all' if value is None else value}"


def _at(values: dict, path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _resolve(root: dict, node: dict) -> dict:
    ref = node.get("$ref")
    if ref:
        return {
            **root["$defs"][ref.rsplit("/", 1)[-1]],
            **{k: v for k, v in node.items() if k != "$ref"},
        }
    return node


def _fields(root: dict, schema: dict, prefix: str, values: dict, omit: set) -> list[dict]:
    out = []
    for name, prop in schema.get("properties", {}).items():
        if name in omit:
            continue
        node = _resolve(root, prop)
        path = f"{prefix}.{name}"
        value = values.get(name, node.get("default"))
        if node.get("type") == "object" or "properties" in node:
            sub = value if isinstance(value, dict) else {}
            out.append(
                {
                    "kind": "fieldset",
                    "path": path,
                    "label": label(name, capital=True),
                    "help": node.get("description", ""),
                    "children": _fields(root, node, path, sub, set()),
                }
            )
            continue
        out.append(_leaf(root, node, path, name, value))
    return out


def _leaf(root: dict, node: dict, path: str, name: str, value: Any) -> dict:
    nullable = False
    options = [_resolve(root, alt) for alt in node.get("anyOf", [])]
    if options:
        nullable = any(alt.get("type") == "null" for alt in options)
        node = {**next(alt for alt in options if alt.get("type") != "null"), **_meta(node)}
    field = {
        "path": path,
        "label": label(name, capital=True),
        "name": name,
        "help": node.get("description", ""),
        "nullable": nullable,
        "value": value,
        "placeholder": node.get("placeholder", "default"),
    }
    kind = node.get("type")
    if "enum" in node:
        return {**field, "kind": "select", "type": kind, "options": _options(node["enum"])}
    if kind == "array":
        items = _resolve(root, node.get("items", {}))
        return {
            **field,
            "kind": "checklist",
            "type": items.get("type"),
            "options": _options(items.get("enum", [])),
        }
    if kind == "boolean":
        return {**field, "kind": "checkbox", "type": "boolean"}
    if kind in ("integer", "number"):
        low = node.get("minimum", node.get("exclusiveMinimum"))
        high = node.get("maximum", node.get("exclusiveMaximum"))
        if name in LIMITED:  # the site's limits of work are tighter than the job's own bounds
            cap = getattr(get_settings(), LIMITED[name])
            high = cap if high is None else min(high, cap)
        step = "1" if kind == "integer" else "any"
        return {**field, "kind": "number", "type": kind, "min": low, "max": high, "step": step}
    return {**field, "kind": "text", "type": "string", "maxlength": node.get("maxLength")}


def _meta(node: dict) -> dict:
    return {k: node[k] for k in ("description", "default", "title", "placeholder") if k in node}


def _options(values: list) -> list[dict]:
    """An enum's choices: the value sent, the words shown ("val_accuracy" -> "val accuracy")."""
    return [{"value": v, "label": label(v) if isinstance(v, str) else str(v)} for v in values]


def page(
    session: Session,
    *,
    kind: str,
    values: dict | None = None,
    prefill: dict | None = None,
    source=None,
    review: dict | None = None,
) -> dict:
    """What runs/new.html renders: a form per kind (`kind`'s shown, filled with values), the
    data sets, the pretrain runs a parent can be, and what the form was opened from."""
    prefill = {"name": "", "tags": "", "dataset": None, "parent": None, **(prefill or {})}
    forms = [
        {
            "kind": k,
            "title": kind_title(k),
            "help": kind_help(k),
            "fields": build_fields(k, values if k == kind else None),
            "presets": form_presets(k, values if k == kind else None),
            "parent_picker": parent_picker(k),
            "parallel": k != STUDY_KIND and kinds.features(k).parallel,
            "study": k == STUDY_KIND,  # posts to /api/ablations (new_run.js: [data-study])
        }
        for k in form_kinds()
    ]
    parents = runs_service.parent_choices(session=session, selected=prefill["parent"])
    return {
        "kind": kind,
        "forms": forms,
        "source": source,
        "review": review,
        "prefill": prefill,
        "datasets": listing.page(session),
        "parents": [RunRead.model_validate(p) for p in parents],
    }


def priority(request: Request) -> dict:
    """The priority field's bounds for whoever opens the form: the database's floor and
    their token's ceiling (STACKLAB_MAX_PRIORITY / STACKLAB_PRIORITY_LIMITS)."""
    return {
        "priority_ceiling": get_settings().priority_ceiling(launched_by(request)),
        "priority_range": (PRIORITY_MIN, PRIORITY_MAX),
    }


def clone_values(run_params: dict, kind: str) -> dict:
    """A source run's parameters, as values for the form of the given kind."""
    allowed = set(model_for(kind).model_fields)
    return {key: value for key, value in run_params.items() if key in allowed}
