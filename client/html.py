"""Small HTML for Jupyter (`_repr_html_`): escaped text, key/value tables, links."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape


def cell(value: object) -> str:
    """A value as escaped text: floats to 4 significant digits, None as a dash."""
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return escape(f"{value:.4g}")
    return escape(str(value))


def link(url: str, text: object) -> str:
    """An escaped link that opens beside the notebook."""
    return f'<a href="{escape(url, quote=True)}" target="_blank">{cell(text)}</a>'


def pairs(title: str, rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table; each value is HTML made by cell() or link()."""
    body = "".join(
        f"<tr><th style='text-align:left'>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows
    )
    return f"<div><strong>{title}</strong><table>{body}</table></div>"


def grid(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A table of escaped cells under escaped headers."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
