"""Debian's Chromium for the browser tests, and where their screenshots go."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.stack import REPO_ROOT, scaled

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"


def ms(seconds: float) -> int:
    """A Playwright timeout (milliseconds): a generous upper bound, stretched like every
    other wait by STACKLAB_TEST_TIMEOUT_SCALE."""
    return int(scaled(seconds) * 1000)


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as a test artifact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
