"""Waiting for runs with a progress bar: tqdm.auto (a widget in Jupyter, text elsewhere)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from client.errors import WaitTimeout
from jobspec.progress import fraction as fraction  # the server's own rule

T = TypeVar("T")
DEFAULT_POLL_SECONDS = 2.0


def poll(
    read: Callable[[], T],
    done: Callable[[T], bool],
    *,
    describe: Callable[[T], tuple[float, str]],
    title: str,
    show: bool,
    timeout: float | None,
    every: float,
) -> T:
    """read() until done(value); a bar (percent) shows describe(value) = (fraction, note).
    WaitTimeout after `timeout` seconds (None: no limit)."""
    from tqdm.auto import tqdm

    deadline = None if timeout is None else time.monotonic() + timeout
    bar: Any = tqdm(total=100, desc=title, unit="%", disable=not show, leave=True)
    try:
        while True:
            value = read()
            part, note = describe(value)
            bar.n = round(100 * part, 1)
            bar.set_postfix_str(note, refresh=False)
            bar.refresh()
            if done(value):
                return value
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"{title}: still not finished after {timeout:g} s ({note})")
            time.sleep(every)
    finally:
        bar.close()
