"""The report as one self-contained HTML file: styles inline, images as data: URIs, charts
as inline SVG, no script; it opens offline and refers to no other host."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

from markupsafe import Markup
from sqlalchemy.orm import Session

from backend import web
from backend.reports import figures, notes, service
from backend.runs import detail, learned
from jobspec.verdicts import Verdict
from store.errors import NotFound

STYLESHEET = web.STATIC / "css" / "app.css"


def context(session: Session, data: dict) -> dict:
    """What the report's templates need besides the data: charts and rendered notes."""
    return {
        "data": data,
        "Verdict": Verdict,  # the verdict vocabulary (jobspec/verdicts.py), not retyped
        # not `charts`: base.html loads Plotly when a page sets that
        "report_charts": figures.charts(session, data),
        "notes_html": notes.render(data["root"]["notes"]),
        "learned": learned.for_report(session, data["root"]["id"]),  # a pretrain's probe
        "finetune_notes": {
            f["id"]: notes.render(f["notes"]) for f in data["finetunes"] if f.get("notes")
        },
    }


def reconstructions_uri(session: Session, run_id: int) -> str | None:
    """The reconstructions grid as a data: URI (None when the run has none)."""
    try:
        png, _ = detail.reconstructions(session, run_id)
    except NotFound:
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def styles() -> Markup:
    """app.css inline, minus anything that would fetch (it has no url(), kept so)."""
    css = STYLESHEET.read_text(encoding="utf-8")
    css = re.sub(r"url\([^)]*\)", "none", css)
    return Markup(f"<style>\n{css}\n</style>")  # noqa: S704 - our own stylesheet


def filename(data: dict) -> str:
    """experiment-12-name-in-ascii.html"""
    slug = re.sub(r"[^a-z0-9]+", "-", data["root"]["name"].lower()).strip("-")[:40]
    return f"experiment-{data['id']}{'-' + slug if slug else ''}.html"


def report_chunks(*, session: Session, run_id: int) -> tuple[Iterator[str], str]:
    """The file's text as the template writes it, piece by piece, and its name. What the
    template reads is gathered here (the session is not used once the text starts)."""
    data = service.experiment(session=session, run_id=run_id)
    chunks = web.templates.env.get_template("reports/export.html").generate(
        **context(session, data),
        export=True,
        styles=styles(),
        recon_src=reconstructions_uri(session, run_id),
    )
    return chunks, filename(data)


def report_html(*, session: Session, run_id: int) -> tuple[str, str]:
    """The file's text and its name."""
    chunks, name = report_chunks(session=session, run_id=run_id)
    return "".join(chunks), name
