"""The digest of what the lock files are made from, stamped into each by scripts/lock.

It covers pyproject.toml's `requires-python`, `dependencies` and `optional-dependencies`
(comments and formatting aside), so tests/test_lock.py can tell that a lock was made from
the pyproject.toml beside it without resolving anything.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

STAMP = "# pyproject.toml inputs sha256: "


def inputs_digest(pyproject: Path) -> str:
    """sha256 of the project's dependency inputs, in a canonical order."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    inputs = {
        "requires-python": project.get("requires-python", ""),
        "dependencies": sorted(project.get("dependencies", [])),
        "optional-dependencies": {name: sorted(reqs) for name, reqs in extras.items()},
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


if __name__ == "__main__":
    print(STAMP + inputs_digest(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")))
