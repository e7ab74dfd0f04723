"""A study's seeds as people give them: a count ("5": seeds 0 to 4) or a list ("1, 2, 7").

One rule for every caller (POST /api/ablations, POST /api/augmentation-studies, the form,
the demo): a bare number n means n seeds, 0 to n - 1; two or more numbers are the seeds
themselves. Fewer than 2 seeds is refused: the verdict is an interval over seeds, and one
seed has no spread to make one from. How many a study may have is STACKLAB_MAX_SEEDS
(store/runs/limits.py check_seeds), checked at launch; the caps here only bound the parse.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema

DEFAULT_SEED_COUNT = 5
MIN_SEEDS = 2  # a confidence interval over seeds needs the spread of two
MAX_SEED = 2**31 - 1  # what every random number generator a run seeds accepts
MAX_SEEDS_PARSED = 1000  # no study gets near it: STACKLAB_MAX_SEEDS decides how many
MAX_SEEDS_TEXT = 10_000  # characters of a typed list
SEEDS_HELP = (
    "A count n (seeds 0 to n - 1; default 5) or the seeds themselves, e.g. 1, 2, 7; at "
    "least 2, since one seed can never give a verdict"
)
TOO_FEW = (
    "at least {minimum} seeds: one seed can never give a verdict (the verdict is an interval "
    "over seeds, and one seed has no spread); give a count such as 5 or seeds such as 0, 1"
)

_COUNT = re.compile(r"\d+")
_SEPARATOR = re.compile(r"[\s,]+")


def default_seeds() -> list[int]:
    """The seeds of a study launched without any: 0 to DEFAULT_SEED_COUNT - 1."""
    return list(range(DEFAULT_SEED_COUNT))


def count_seeds(n: int) -> list[int]:
    """What a count means: seeds 0 to n - 1."""
    if n > MAX_SEEDS_PARSED:
        raise ValueError(f"{n:,} seeds; no study may have more than {MAX_SEEDS_PARSED:,}")
    return list(range(n))


def parse_seeds(value: object) -> list[int]:
    """A count (a number, or text of one number) or a list (a JSON list, or text of numbers
    separated by commas or spaces) -> the seeds, at least MIN_SEEDS; ValueError says why not.
    Repeated seeds are refused at launch (limits.check_seeds names them)."""
    if isinstance(value, bool):
        raise ValueError("a count of seeds or a list of seeds, not true/false")
    if isinstance(value, int):
        seeds = count_seeds(value)
    elif isinstance(value, str):
        seeds = _parse_text(value)
    elif isinstance(value, list | tuple):
        seeds = _parse_list(value)
    else:
        raise ValueError("a count of seeds (e.g. 5) or a list of seeds (e.g. [1, 2, 7])")
    if len(seeds) < MIN_SEEDS:
        raise ValueError(TOO_FEW.format(minimum=MIN_SEEDS))
    return seeds


def _parse_text(text: str) -> list[int]:
    if len(text) > MAX_SEEDS_TEXT:
        raise ValueError(f"{len(text):,} characters; seeds are at most {MAX_SEEDS_TEXT:,}")
    text = text.strip()
    if _COUNT.fullmatch(text):
        return count_seeds(int(text))
    tokens = [t for t in _SEPARATOR.split(text) if t]
    if not tokens:
        raise ValueError("a count of seeds (e.g. 5) or seeds separated by commas (e.g. 1, 2, 7)")
    bad = next((t for t in tokens if not _COUNT.fullmatch(t)), None)
    if bad is not None:
        shown = bad if len(bad) <= 20 else bad[:20] + "…"
        raise ValueError(
            f"{shown!r} is not a seed: a count (e.g. 5) or whole numbers from 0 separated "
            "by commas (e.g. 1, 2, 7)"
        )
    return _parse_list([int(t) for t in tokens])


def _parse_list(items: list[object] | tuple[object, ...]) -> list[int]:
    if len(items) > MAX_SEEDS_PARSED:
        raise ValueError(f"{len(items):,} seeds; no study may have more than {MAX_SEEDS_PARSED:,}")
    seeds = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValueError(f"seeds are whole numbers; got {type(item).__name__}")
        if not 0 <= item <= MAX_SEED:
            raise ValueError(f"a seed is from 0 to {MAX_SEED:,}; got {item}")
        seeds.append(item)
    return seeds


# The API's type of a study's seeds: it takes what parse_seeds takes and holds the list.
Seeds = Annotated[
    list[int],
    BeforeValidator(parse_seeds),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": MIN_SEEDS, "maximum": MAX_SEEDS_PARSED},
                {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
                    "minItems": MIN_SEEDS,
                    "maxItems": MAX_SEEDS_PARSED,
                },
                {"type": "string", "maxLength": MAX_SEEDS_TEXT},
            ],
            "description": SEEDS_HELP,
        }
    ),
    Field(default_factory=default_seeds, description=SEEDS_HELP),
]
