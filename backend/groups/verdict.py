"""A study's answer in words: the verdict sentence, what it covers, and the rule behind it."""

from __future__ import annotations

import math

from backend.formatting import fmt_pct
from jobspec.verdicts import Verdict


def format_p(p: float) -> str:
    """A p-value as people read it."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def points(value: float) -> str:
    return f"{value:+.1f}"


def _seeds(count: int | None, cap: int) -> str:
    return f"more than {cap}" if count is None else str(count)


def detectability(diff: dict) -> str:
    """The exact detectable effect, the power the study had, and the seeds an effect needs
    as a range from the sd's own uncertainty (a rough guide)."""
    if diff["mde"] is None:
        return ""
    text = (
        f"At n = {diff['n']} seeds (sd of d {diff['sd_used']:.1f} points) the smallest effect "
        f"this study could detect with 80% power (exact noncentral t, two-sided α = 0.05) is "
        f"{diff['mde']:.1f} points"
    )
    effect = diff["effect"]
    if effect is None:
        return text + "."
    cap = diff["seeds_cap"]
    text += f"; its power for an effect of {effect:.1f} points is {diff['power_at_effect']:.0%}"
    if diff.get("effect_from") == "observed":  # post-hoc power: a restated p, not evidence
        text += (
            " (the observed difference: post-hoc power restates the p value, it adds no evidence)"
        )
    text += "."
    spread = diff.get("seeds_range")
    needed = _seeds(diff["seeds_needed"], cap)
    if diff["seeds_needed"] is not None:
        needed = f"about {needed}"
    text += f" Rough guide: {needed} seeds would detect an effect of {effect:.1f} points"
    if spread is None:
        return text + "."
    return text + (
        f" (between {_seeds(spread['fewest'], cap)} and {_seeds(spread['most'], cap)} over "
        f"the sd's {spread['level']:.0%} interval, {spread['sd_low']:.1f} to "
        f"{spread['sd_high']:.1f} points: an sd from {diff['n']} seeds is itself uncertain)."
    )


def two_seeds(diff: dict, t_crit: float) -> str:
    """What a study of two seeds can show, said plainly."""
    if diff["n"] != 2 or diff["mde"] is None:
        return ""
    spread = diff.get("seeds_range") or {}
    sd = diff["sd_used"]
    text = (
        f"Two seeds show little: the interval rests on 1 degree of freedom (t = {t_crit:.2f}), "
        f"so only a mean difference over {t_crit / math.sqrt(2):.1f} times the seeds' sd can "
        "come out helped or hurt"
    )
    if spread and sd:
        text += (
            f", and that sd is known only to within {spread['sd_low'] / sd:.2f}× to "
            f"{spread['sd_high'] / sd:.0f}× the observed one (95%)"
        )
    return text + "."


def floor_note(diff: dict) -> str:
    """Said when the seeds agree to within the metric's resolution."""
    if not diff.get("floored"):
        return ""
    return (
        f"The seeds' differences agree to within the metric's resolution on this test set "
        f"(observed sd {diff['sd']:.2f} points, below one test image's step of "
        f"{diff['resolution']:.2f} points), so the interval uses that step as the sd: it is "
        "no more certain than the test set can measure; more seeds would show the real spread."
    )


def scope(diff: dict, test_set: dict | None, *, per_seed_split: bool) -> str:
    """Which sources of variance the verdict's interval covers, and which it does not."""
    text = (
        "The interval covers training randomness across seeds (initialisation, data order) "
        "on one fixed test set"
    )
    text += "; the seeds also differ in split." if per_seed_split else " and one fixed split."
    if not test_set or not test_set.get("available"):
        why = (test_set or {}).get("why") or "no stored test predictions to resample"
        return text + f" Test-set sampling is not counted ({why})."
    text += (
        f" Test-set sampling alone (bootstrap over test images, {test_set['replicates']} "
        f"replicates): {points(test_set['low'])} to {points(test_set['high'])}"
    )
    if test_set["combined_low"] is None:
        return text + "."
    text += (
        f"; with both, {points(test_set['combined_low'])} to {points(test_set['combined_high'])}"
    )
    if test_set["combined_outcome"] != diff["outcome"]:
        text += f", which reads {Verdict(test_set['combined_outcome']).word}"
    return text + "."


def sentence(
    *,
    subject: str,
    arms: tuple[str, str],
    metric: str,
    dataset: str,
    diff: dict,
    pairs: int,
    seeds: int,
) -> dict:
    """The verdict: outcome (a Verdict) and its sentence."""
    outcome = Verdict(diff["outcome"])
    if outcome == Verdict.TOO_FEW:
        return {
            "outcome": outcome,
            "word": outcome.word,
            "text": _too_few(subject, dataset, diff, pairs, seeds),
        }
    baseline, treatment = arms
    numbers = (
        f"{points(diff['mean'])} points {metric} on {dataset} ({treatment} minus {baseline}; "
        f"95% CI {points(diff['low'])} to {points(diff['high'])}; n = {diff['n']} seeds)"
    )
    if outcome == Verdict.INCONCLUSIVE:
        head = f"Inconclusive whether {lower_first(subject)} helped: {numbers}, the CI contains 0."
    else:
        head = f"{subject} {outcome.word}: {numbers}."
    return {
        "outcome": outcome,
        "word": outcome.word,
        "text": f"{head} {floor_note(diff)} {detectability(diff)}".replace("  ", " ").strip(),
    }


def _too_few(subject: str, dataset: str, diff: dict, pairs: int, seeds: int) -> str:
    if diff.get("no_spread"):
        return (
            f"Too few seeds yet to judge {lower_first(subject)} on {dataset}: all {pairs} seed "
            f"pairs gave the same difference ({points(diff['mean'])} points) and the metric's "
            "resolution on this test set is unknown, so the spread between seeds, and with it "
            "any interval, cannot be measured: add seeds."
        )
    return (
        f"Too few seeds yet to judge {lower_first(subject)} on {dataset}: {pairs} of "
        f"{seeds} seed pairs finished, at least 2 needed for a confidence interval."
    )


def percent(points: float) -> str:
    """A score in points (0-100) as every page writes a percentage (formatting.fmt_pct)."""
    return fmt_pct(points / 100)


def at_chance(
    *,
    subject: str,
    arms: tuple[str, str],
    metric: str,
    best: tuple[float, float],
    limit: dict,
    seeds: int,
) -> dict:
    """The verdict when both arms are at chance: said so, and no effect size."""
    (baseline, treatment), (low, high) = arms, best
    text = (
        f"Both arms are at chance level: the best {metric} of any seed is {percent(low)} "
        f"({baseline}) and {percent(high)} ({treatment}) over {seeds} seeds, where always "
        f"predicting the most common class scores {percent(limit['majority'])} and guessing "
        f"uniformly {percent(limit['uniform'])} (noise margin {limit['margin']:.1f} points on "
        f"{limit['test_images']:,} test images). No effect size is computed: a difference "
        f"between models that learnt nothing says nothing about whether "
        f"{lower_first(subject)} helps. Train longer (more epochs or images) or check the "
        "settings, then launch the study again."
    )
    return {"outcome": Verdict.CHANCE, "word": Verdict.CHANCE.word, "text": text}


def one_arm_at_chance(*, arm: str, metric: str, best: float, limit: dict) -> str:
    """What is added to a verdict when one arm alone is at chance."""
    level = max(limit["majority"], limit["uniform"])
    return (
        f"The {arm} arm is at chance level: its best {metric} is {percent(best)}, within "
        f"{limit['margin']:.1f} points of what a classifier that learnt nothing scores "
        f"({percent(level)})."
    )


def rule(*, metric: str, arms: tuple[str, str]) -> str:
    """How the verdict is decided, written on the page."""
    baseline, treatment = arms
    return (
        f"The seed is the unit of replication: for each seed, d = {metric} of the {treatment} "
        f"run minus the {baseline} run, in percentage points. Helped if the 95% confidence "
        "interval of the mean d (Student t over seeds) lies above 0, hurt if it lies below 0, "
        "inconclusive if it contains 0; too few with fewer than 2 finished seed pairs. An sd "
        "of d below the metric's resolution (the step one test image moves it on this test "
        "set) is raised to it, so seeds that all agree do not make an interval of zero width. "
        "Smallest detectable effect at n seeds: the true mean difference a two-sided paired "
        "t-test at α = 0.05 finds with exactly 80% power, from the noncentral t with n − 1 "
        "degrees of freedom and the sd of d; the seeds an effect E needs are the smallest n "
        "whose power for E reaches 80%, shown over the 95% chi-square interval of the sd as "
        "a rough guide. The interval and the verdict are about the study's pre-registered "
        "metric only; every other metric on this page is exploratory."
    )
