"""Columns that hold a value of the status vocabulary (jobspec.status) and the guard that
keeps them inside it.

A column is stored as a plain VARCHAR (no native database enum: adding a value stays one
migration that replaces a CHECK), read back as the enum member, and refused in Python when
a write names an unknown value. The database refuses it too: `known_values` is the CHECK
constraint migration 0007 creates on PostgreSQL (on SQLite, where adding a CHECK would
rebuild the table, the same rule is a pair of triggers; see that migration).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import CheckConstraint, Enum

from jobspec.status import sql_in

LENGTH = 20  # the VARCHAR length the columns have had since migration 0001


def vocabulary_column(enum: type[StrEnum]) -> Enum:
    """A VARCHAR column read and written as `enum`'s members (their values are stored)."""
    return Enum(
        enum,
        native_enum=False,
        length=LENGTH,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
        create_constraint=False,  # the named CHECK below is the one the migration creates
    )


def known_values(column: str, enum: type[StrEnum]) -> CheckConstraint:
    """CHECK `column IN (<every value of enum>)`, named ck_<table>_<column>_known."""
    return CheckConstraint(sql_in(column, enum), name=f"{column}_known")
