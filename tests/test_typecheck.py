"""The type checker is part of the test command, sees every package, and is strict where
every layer reads: jobspec and store."""

from __future__ import annotations

import re
import tomllib

from tests.stack import REPO_ROOT

# --strict's flags (mypy 2.4), spelled out in the override: `strict = true` there would
# turn them on for every module.
STRICT_FLAGS = {
    "disallow_any_generics",
    "disallow_subclassing_any",
    "disallow_untyped_calls",
    "disallow_untyped_defs",
    "disallow_incomplete_defs",
    "check_untyped_defs",
    "disallow_untyped_decorators",
    "warn_return_any",
    "no_implicit_reexport",
    "strict_equality",
    "extra_checks",
}


def _mypy_config() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def _packages() -> set[str]:
    """Top-level packages of the project (folders with an __init__.py), tests aside."""
    return {
        path.parent.name
        for path in REPO_ROOT.glob("*/__init__.py")
        if path.parent.name not in ("tests", "bench", "docs")
    }


def test_the_test_command_runs_mypy_before_pytest():
    text = (REPO_ROOT / "scripts" / "test").read_text()
    mypy = re.search(r"^python3 -m mypy\s*$", text, flags=re.MULTILINE)
    assert mypy is not None, "scripts/test must run `python3 -m mypy`"
    assert mypy.start() < text.index("exec python3 -m pytest")


def test_mypy_checks_every_package_with_the_pydantic_plugin():
    config = _mypy_config()
    assert "pydantic.mypy" in config["plugins"]
    assert set(config["files"]) == _packages()
    assert "strict" not in config  # strict where it is asked for, not everywhere


def test_jobspec_and_store_are_checked_strictly():
    overrides = _mypy_config()["overrides"]
    strict = [o for o in overrides if {"jobspec.*", "store.*"} <= set(o["module"])]
    assert len(strict) == 1
    assert "strict" not in strict[0], "strict = true in an override applies to every module"
    assert {flag for flag in STRICT_FLAGS if strict[0].get(flag) is True} == STRICT_FLAGS


def test_heavy_libraries_are_never_analysed():
    overrides = _mypy_config()["overrides"]
    skipped = {m for o in overrides if o.get("follow_imports") == "skip" for m in o["module"]}
    assert {"tensorflow.*", "keras.*", "optuna.*"} <= skipped
