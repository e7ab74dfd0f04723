"""A study's answer in words: the verdict sentence and the rule that decides it."""

from __future__ import annotations

from backend.compare import stats

WORDS = {stats.HELPED: "helped", stats.HURT: "hurt", stats.INCONCLUSIVE: "inconclusive"}


def format_p(p: float) -> str:
    """A p-value as people read it."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def points(value: float) -> str:
    return f"{value:+.1f}"


def detectability(diff: dict) -> str:
    """ "The smallest effect it could detect is M points; about K seeds would detect E." """
    if diff["mde"] is None:
        return ""
    text = (
        f"The smallest effect this study could detect at n = {diff['n']} (80% power, "
        f"two-sided α = 0.05, observed sd {diff['sd']:.1f} points) is {diff['mde']:.1f} points"
    )
    effect = diff["effect"]
    if effect is None:
        return text + "."
    needed = diff["seeds_needed"]
    seeds = f"more than {diff['seeds_cap']}" if needed is None else f"about {needed}"
    return text + f"; {seeds} seeds would detect an effect of {effect:.1f} points."


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
    """The verdict: outcome (helped / hurt / inconclusive / too_few) and its sentence."""
    outcome = diff["outcome"]
    if outcome == stats.TOO_FEW:
        text = (
            f"Too few seeds yet to judge {lower_first(subject)} on {dataset}: {pairs} of "
            f"{seeds} seed pairs finished, at least 2 needed for a confidence interval."
        )
        return {"outcome": outcome, "word": "too few", "text": text}
    baseline, treatment = arms
    numbers = (
        f"{points(diff['mean'])} points {metric} on {dataset} ({treatment} minus {baseline}; "
        f"95% CI {points(diff['low'])} to {points(diff['high'])}; n = {diff['n']} seeds)"
    )
    if outcome == stats.INCONCLUSIVE:
        head = f"Inconclusive whether {lower_first(subject)} helped: {numbers}, the CI contains 0."
    else:
        head = f"{subject} {WORDS[outcome]}: {numbers}."
    return {
        "outcome": outcome,
        "word": WORDS[outcome],
        "text": f"{head} {detectability(diff)}".strip(),
    }


def rule(*, metric: str, arms: tuple[str, str]) -> str:
    """How the verdict is decided, written on the page."""
    baseline, treatment = arms
    return (
        f"The seed is the unit of replication: for each seed, d = {metric} of the {treatment} "
        f"run minus the {baseline} run, in percentage points. Helped if the 95% confidence "
        "interval of the mean d (Student t over seeds) lies above 0, hurt if it lies below 0, "
        "inconclusive if it contains 0; too few with fewer than 2 finished seed pairs. "
        "Smallest detectable effect at n seeds: (t(0.975, n−1) + t(0.8, n−1)) · sd / √n, the "
        "true mean difference a paired t-test finds 80% of the time at two-sided α = 0.05, "
        "with sd the observed standard deviation of d; the seeds an effect E needs are the "
        "smallest n at which that is at most E."
    )
