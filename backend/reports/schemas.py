"""What the report's API takes and returns besides the runs' own schemas."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobspec.text import Notes, RunName, Tag
from store.runs.schemas import PRIORITY_HELP, Priority, RunRead


class RunEdit(BaseModel):
    """Changes to a run's labels, notes and (while queued) priority; a field left out stays
    as it is."""

    model_config = ConfigDict(extra="forbid")

    # The text rules (jobspec.text) refuse what no page can show and cap each field hard;
    # the real limits are settings (store/runs/limits.py).
    notes: Notes | None = Field(None, description="Markdown; null clears")
    name: RunName | None = Field(None, description="The run's name (not empty)")
    tags: list[Tag] | None = Field(None, max_length=1000)
    priority: Priority | None = Field(
        None, description=f"Only while the run is queued (else 409). {PRIORITY_HELP}"
    )

    @field_validator("name")
    @classmethod
    def _not_blank(cls, name: str | None) -> str | None:
        if name is not None and not name.strip():
            raise ValueError("a name needs at least one character that is not a space")
        return name.strip() if name is not None else None


class RunEdited(RunRead):
    """The run after an edit, with its notes rendered (safe HTML)."""

    notes_html: str = Field("", description="The notes as HTML (markdown, raw HTML escaped)")
