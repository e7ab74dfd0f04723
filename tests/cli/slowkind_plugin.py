"""Registers the slow test kind (tests/cli/slowkind.py): the module STACKLAB_KIND_MODULES
names in the `serve` the tests start."""

from __future__ import annotations

from jobspec.kinds import register
from tests.cli.slowkind import SLOW_BATCH

register(SLOW_BATCH)
