"""The README's test command is the one CI runs, and it works on a fresh machine."""

from __future__ import annotations

import os
import re

from tests.stack import REPO_ROOT


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^    (\S.*)$", section, flags=re.MULTILINE)
    assert "./scripts/test" in commands
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\./scripts/test$", ci, flags=re.MULTILINE)


def test_the_script_installs_chromium_when_missing_and_runs_pytest():
    script = REPO_ROOT / "scripts" / "test"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "command -v chromium" in text and "apt-get install" in text
    assert "pip install -q -r requirements-test.lock" in text  # the locked versions
    assert "pip install -q --no-deps -e ." in text
    last = text.rstrip().splitlines()[-1]
    assert last.startswith("exec python3 -m pytest") and last.endswith('"$@"')
    assert "--dist loadfile" in last  # a module's fixtures stay in one test process


def test_the_longest_first_order_names_modules_that_exist_once():
    """A renamed or deleted module would drop out of the order silently and run last."""
    from tests.conftest import GROUPED, LONGEST_FIRST

    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
    missing = [path for path in LONGEST_FIRST if not (REPO_ROOT / path).is_file()]
    assert not missing
    # A grouped folder's modules sit together, so the folder goes out where its first is.
    for unit in GROUPED:
        ranks = [i for i, path in enumerate(LONGEST_FIRST) if path.startswith(unit)]
        assert ranks == list(range(ranks[0], ranks[0] + len(ranks))), unit
