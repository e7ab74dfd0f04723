"""Pages get plain objects (pydantic models, dicts), never ORM rows: a template cannot
lazy-load a relation or write to the session, and what a page shows is what the API says."""

from __future__ import annotations

import pytest

from backend import web
from store.base import Base
from tests.web.factories import finetune_result, make_group, make_run


def _orm_rows(value, depth: int = 0) -> list:
    if isinstance(value, Base):
        return [value]
    if depth > 3:
        return []
    if isinstance(value, dict):
        return [row for v in value.values() for row in _orm_rows(v, depth + 1)]
    if isinstance(value, list | tuple):
        return [row for v in value for row in _orm_rows(v, depth + 1)]
    return []


@pytest.fixture
def contexts(monkeypatch):
    seen: list[tuple[str, dict]] = []
    real = web.templates.TemplateResponse

    def record(request, name, context, *args, **kwargs):
        seen.append((name, context))
        return real(request, name, context, *args, **kwargs)

    monkeypatch.setattr(web.templates, "TemplateResponse", record)
    return seen


def test_no_page_hands_an_orm_row_to_its_template(client, contexts):
    pre = make_run("pretrain", name="plain-pre")
    tuned = make_run("tune", name="plain-tune")
    group = make_group(name="plain-group")
    a = make_run("finetune", parent_run_id=pre, group_id=group, result=finetune_result())
    b = make_run("finetune", parent_run_id=pre, group_id=group, result=finetune_result())
    pages = [
        "/runs",
        f"/runs/{a}",
        f"/runs/{pre}",
        f"/runs/new?clone={a}",
        f"/runs/new?parent={pre}",
        f"/compare?ids={a},{b}",
        f"/groups/{group}",
        f"/studies/{tuned}",
        "/datasets",
        "/datasets/demo-tiny",
    ]
    for page in pages:
        assert client.get(page).status_code in (200, 404), page
    assert len(contexts) >= len(pages) - 1
    leaks = {name: _orm_rows(context) for name, context in contexts}
    assert not any(leaks.values()), {k: [type(r).__name__ for r in v] for k, v in leaks.items()}
