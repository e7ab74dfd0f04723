"""The verdict vocabulary of an ablation study, defined once: what the study's answer is.

Read by the statistics (`backend/compare/stats.py` decides helped / hurt / inconclusive /
too few), the chance guard (`backend/groups/chance.py`), the next step a verdict names, the
study page and the experiment report; the pages get the values from the server
(`vocabulary()` in the study's JSON and the Jinja globals of the study and report pages),
never retyped. Pure standard library.
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """A study's answer about its factor, on its pre-registered metric."""

    HELPED = "helped"  # the seed interval of mean d lies above 0
    HURT = "hurt"  # ... below 0
    INCONCLUSIVE = "inconclusive"  # it contains 0
    TOO_FEW = "too_few"  # no interval: fewer than 2 seed pairs, or no spread to measure
    CHANCE = "chance"  # both arms no better than a classifier that learnt nothing

    @classmethod
    def answers(cls) -> tuple[Verdict, ...]:
        """A direction: the interval excludes 0."""
        return (cls.HELPED, cls.HURT)

    @classmethod
    def open(cls) -> tuple[Verdict, ...]:
        """Still open: more seeds could turn it into an answer."""
        return (cls.TOO_FEW, cls.INCONCLUSIVE)

    @classmethod
    def judged(cls) -> tuple[Verdict, ...]:
        """An interval was computed and read (its p value is a test of the factor)."""
        return (cls.HELPED, cls.HURT, cls.INCONCLUSIVE)

    @property
    def word(self) -> str:
        """The verdict as a page writes it."""
        return _WORDS.get(self, self.value)

    @property
    def is_answer(self) -> bool:
        return self in Verdict.answers()


_WORDS = {Verdict.TOO_FEW: "too few", Verdict.CHANCE: "at chance"}


def vocabulary() -> dict[str, dict[str, str] | list[str]]:
    """The vocabulary for scripts: member name -> value (`names.HELPED`), value -> the word
    a page writes (`words.too_few`), and the values whose interval was read (`judged`)."""
    return {
        "names": {member.name: member.value for member in Verdict},
        "words": {member.value: member.word for member in Verdict},
        "judged": [member.value for member in Verdict.judged()],
    }
