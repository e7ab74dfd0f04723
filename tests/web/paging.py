"""The runs table paged two ways, for tests that keyset paging equals offset paging."""

from __future__ import annotations


def by_cursor_and_offset(client, base: dict, *, runs: int, pages: int = 30) -> tuple[list, list]:
    """The ids of /api/runs/table with `base` query, followed by next_cursor (at most
    `pages` pages), and read by offset over `runs` runs in steps of base["limit"]."""
    by_cursor: list[int] = []
    cursor = None
    for _ in range(pages):
        page = client.get("/api/runs/table", params={**base, "cursor": cursor} if cursor else base)
        assert page.status_code == 200, page.text
        by_cursor += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    by_offset: list[int] = []
    for offset in range(0, runs, base["limit"]):
        items = client.get("/api/runs/table", params={**base, "offset": offset}).json()["items"]
        by_offset += [item["id"] for item in items]
    return by_cursor, by_offset
