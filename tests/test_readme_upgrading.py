"""The README's upgrade notes say what the code does: the schema is upgraded when serve,
the web app or a worker starts (there is no other migrate step), and every worker must
stop before an upgrade past 0008, the migration that moved system samples out of the
metrics."""

from __future__ import annotations

import re

from tests.stack import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
STARTERS = ("cli/serve.py", "backend/main.py", "worker/celery_app.py")


def _section(title: str) -> str:
    found = re.search(rf"^### {title}\n(.*?)(?=^#)", README, re.S | re.M)
    assert found, f"README has no '### {title}' section"
    return " ".join(found.group(1).split())


def test_the_readme_says_upgrades_run_at_start_and_workers_stop_before_0008():
    text = _section("Upgrading")
    assert "`stacklab serve`" in text and "a worker starts" in text
    assert "Stop every worker before upgrading past migration 0008" in text
    assert (REPO_ROOT / "store/migrations/versions/0008_run_samples.py").is_file()


def test_each_process_the_readme_names_upgrades_the_schema_when_it_starts():
    for path in STARTERS:
        assert "upgrade_schema()" in (REPO_ROOT / path).read_text(encoding="utf-8"), path
