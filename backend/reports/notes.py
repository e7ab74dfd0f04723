"""The researcher's notes on a run (a pretrain's are its experiment's): markdown stored as
written, rendered as CommonMark with raw HTML off, so `<script>` shows as text.

Links may point only at http(s) addresses or at paths of this site; images are not
rendered (an exported report must load nothing from elsewhere), their markdown reads as a
link.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

from markupsafe import Markup
from sqlalchemy.orm import Session

from backend.reports.schemas import RunEdit
from store.runs import launch as launcher
from store.runs import limits
from store.runs import service as runs_service
from store.runs.models import Run
from store.settings import get_settings

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*:", re.IGNORECASE)
_WEB = re.compile(r"^https?://", re.IGNORECASE)


def allowed_link(url: str) -> bool:
    """http(s) addresses and relative links; no other scheme, no protocol-relative `//host`."""
    url = url.strip()
    if _WEB.match(url):
        return True
    return not _SCHEME.match(url) and not url.startswith(("//", "\\", "/\\"))


@lru_cache
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt  # the web's pages import it only when notes render

    class Notes(MarkdownIt):
        def validateLink(self, url: str) -> bool:  # markdown-it's hook for links
            return allowed_link(url)

    md = Notes("commonmark", {"html": False})
    md.disable("image")

    def link_open(self, tokens, idx, options, env):
        tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
        return self.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


def render(text: str | None) -> Markup:
    """Notes as safe HTML ('' for none)."""
    if not text:
        return Markup("")
    return Markup(_markdown().render(text))


def check(edit: RunEdit) -> None:
    """Notes length, and the name and tags against the limits of work (422 naming the field)."""
    settings = get_settings()
    if edit.notes is not None and len(edit.notes) > settings.max_notes_chars:
        what = f"{len(edit.notes):,} characters"
        raise limits.over("notes", what, settings.max_notes_chars, "max_notes_chars")
    limits.check_labels(settings, name=edit.name, tags=edit.tags or [])


def edit_run(
    *, session: Session, run_id: int, edit: RunEdit, requested_by: str | None = None
) -> Run:
    """Change a run's notes, name, tags or (queued only) priority: only the fields sent,
    all or none (a refused priority changes nothing else); the rest stays as it is."""
    run = runs_service.get_run(session, run_id)
    check(edit)
    sent = edit.model_fields_set
    reprioritised = False
    if "priority" in sent and edit.priority is not None:  # first: a refusal changes nothing
        reprioritised = True
        limits.check_priority(get_settings(), edit.priority, requested_by)
        run = runs_service.set_priority(session=session, run_id=run_id, priority=edit.priority)
    if "notes" in sent:
        run.notes = edit.notes or None
    if "name" in sent and edit.name is not None:
        run.name = edit.name
    if "tags" in sent and edit.tags is not None:
        run.tags = list(edit.tags)
    session.commit()
    session.refresh(run)
    if reprioritised:
        launcher.decide_set_asides()
    return run
