"""The new-run form, generated from the jobspec models' JSON schema (one field per parameter).

A field is a plain dict the template renders: inputs are named by their dotted path under
"params" (e.g. "params.ae01.kernel_size") so a 422's detail[].loc maps straight onto them.
"""

from __future__ import annotations

from typing import Any

from jobspec import kinds
from jobspec.params import FinetuneConfig
from store.settings import get_settings

# The form's own kind: a group of finetunes (POST /api/augmentation-studies), not a job kind.
STUDY_KIND = "augmentation"
STUDY_HELP = (
    "The same finetune with augmentation off and on, once per seed, "
    "as one group; the group page says whether augmentation helped."
)


def form_kinds() -> tuple[str, ...]:
    """A tab per registered job kind, then the augmentation study."""
    return (*kinds.names(), STUDY_KIND)


def __getattr__(name: str):
    # FORM_KINDS stays importable and live: it reads the registry each time.
    if name == "FORM_KINDS":
        return form_kinds()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def kind_title(kind: str) -> str:
    """The tab's title."""
    return "Augmentation study" if kind == STUDY_KIND else kinds.get(kind).label


def kind_help(kind: str) -> str:
    """One line under the tab on what the job does (its model's docstring)."""
    return STUDY_HELP if kind == STUDY_KIND else kinds.get(kind).help


# Fields whose input maximum is a limit of work (backend/runs/limits.py), by setting.
LIMITED = {"epochs": "max_epochs", "batch_size": "max_batch_size", "n_trials": "max_trials"}
# The study sets these per run itself.
STUDY_OMITS = {"augment", "seed"}


def model_for(kind: str):
    """The jobspec model whose parameters a form kind edits."""
    return FinetuneConfig if kind == STUDY_KIND else kinds.get(kind).params


def build_fields(kind: str, values: dict | None = None) -> list[dict]:
    """The form's fields for a kind, prefilled with values (defaults where absent)."""
    schema = model_for(kind).model_json_schema()
    omit = STUDY_OMITS if kind == STUDY_KIND else set()
    return _fields(schema, schema, "params", values or {}, omit)


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
                    "label": name,
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
        "label": name.replace("_", " "),
        "name": name,
        "help": node.get("description", ""),
        "nullable": nullable,
        "value": value,
    }
    kind = node.get("type")
    if "enum" in node:
        return {**field, "kind": "select", "type": kind, "options": node["enum"]}
    if kind == "array":
        items = _resolve(root, node.get("items", {}))
        return {
            **field,
            "kind": "checklist",
            "type": items.get("type"),
            "options": items.get("enum", []),
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
    return {k: node[k] for k in ("description", "default", "title") if k in node}


def clone_values(run_params: dict, kind: str) -> dict:
    """A source run's parameters, as values for the form of the given kind."""
    allowed = set(model_for(kind).model_fields)
    return {key: value for key, value in run_params.items() if key in allowed}
