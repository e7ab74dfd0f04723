"""Small statistics for comparing runs and judging ablation studies.

Mean ± sd, Student-t confidence intervals, the paired t-test, and for a study (the seed is
the unit of replication: one paired difference d_i = treatment − baseline per seed): the
verdict from the CI of mean d, with the metric's resolution as the floor of its sd (every
seed giving the same d is not certainty: the metric moves in steps), the exact power figures
of `power.py`, an exact sign-flip permutation test over seeds, and Holm's adjustment for the
studies of one experiment. The per-image tests (McNemar and friends, which do not test the
factor) live in `image_tests.py`. Pure: numbers in, numbers out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from backend.compare import power
from backend.formatting import fmt_pct
from jobspec.verdicts import Verdict

EXACT_FLIPS_UP_TO = 16  # seeds; above, the sign-flip test samples flips at random
SAMPLED_FLIPS = 20_000
ZERO = 1e-9  # a difference this small (in points) counts as none
LEVEL = 0.95


def shown_value(value: float, *, percent: bool) -> str:
    """A value as the compare page writes it (dom.js fmt.pct / fmt.metric): 80.0%, 0.4123;
    whole numbers and values from 1000 on in full (1234.5, 12345), as fmt.metric does."""
    if percent:
        return fmt_pct(value)
    if float(value).is_integer() and abs(value) < 1e21:
        return str(int(value))
    if abs(value) >= 1000:
        return repr(float(value))
    return f"{value:.4g}"


def single_best(values: dict[str, float], *, goal: str, percent: bool) -> str | None:
    """The key of the one best value (lowest when goal is "min"), None when fewer than two
    values, or when several share the best as the page shows them (80.0% and 80.0%): a tie
    has no single best, so nothing is bolded rather than one of the tied picked at random."""
    values = {k: v for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)}
    if len(values) < 2:
        return None
    pick = min if goal == "min" else max
    best = pick(values, key=lambda key: values[key])
    top = shown_value(values[best], percent=percent)
    tied = [key for key in values if shown_value(values[key], percent=percent) == top]
    return best if len(tied) == 1 else None


def _stats():
    """scipy.stats, imported on first use: it adds ~1 s and ~30 MB to the web's start."""
    from scipy import stats

    return stats


def mean_sd(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (ddof=1; None with fewer than two values)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return {"n": 0, "mean": None, "sd": None}
    sd = float(data.std(ddof=1)) if data.size > 1 else None
    return {"n": int(data.size), "mean": float(data.mean()), "sd": sd}


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean with a Student-t confidence interval (None bounds with fewer than two values)."""
    data = np.asarray(values, dtype=float)
    out = {**mean_sd(values), "level": level, "low": None, "high": None}
    if data.size < 2:
        return out
    half = _stats().t.ppf(0.5 + level / 2, data.size - 1) * out["sd"] / math.sqrt(data.size)
    out["low"], out["high"] = float(out["mean"] - half), float(out["mean"] + half)
    return out


def paired_t(after: Sequence[float], before: Sequence[float]) -> dict | None:
    """Paired t-test of after vs before (scipy's ttest_rel); None with fewer than two pairs.

    When every difference is the same, t is infinite (p = 0) unless the differences are all
    zero (p = 1): scipy answers nan there, which says nothing useful on a page.
    """
    a, b = np.asarray(after, dtype=float), np.asarray(before, dtype=float)
    if a.size != b.size:
        raise ValueError("paired samples need the same length")
    if a.size < 2:
        return None
    diffs = a - b
    if np.allclose(diffs, diffs[0]):
        zero = bool(np.isclose(diffs[0], 0.0))
        return {
            "t": 0.0 if zero else math.copysign(math.inf, diffs[0]),
            "p": 1.0 if zero else 0.0,
            "df": int(a.size - 1),
        }
    result = _stats().ttest_rel(a, b)
    return {"t": float(result.statistic), "p": float(result.pvalue), "df": int(a.size - 1)}


def judge(ci: dict) -> Verdict:
    """helped / hurt when the CI of mean d excludes 0, inconclusive when it contains 0,
    too_few without an interval (fewer than two seed pairs, or no spread to measure)."""
    if ci.get("low") is None:
        return Verdict.TOO_FEW
    if ci["low"] > 0:
        return Verdict.HELPED
    if ci["high"] < 0:
        return Verdict.HURT
    return Verdict.INCONCLUSIVE


def sign_flip(diffs: Sequence[float]) -> dict | None:
    """Paired permutation test over seeds: under "the factor does nothing" each d_i is as
    likely to have either sign, so p is the share of the 2^n sign patterns whose |mean| is
    at least the observed one (two-sided). Exact up to EXACT_FLIPS_UP_TO seeds, sampled
    beyond; its smallest possible p is 2 / 2^n (both all-same-sign patterns)."""
    d = np.asarray(diffs, dtype=float)
    n = int(d.size)
    if n == 0:
        return None
    observed = abs(d.mean())
    exact = n <= EXACT_FLIPS_UP_TO
    if exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(0).choice((1.0, -1.0), size=(SAMPLED_FLIPS, n))
    means = np.abs(signs @ d) / n
    # A pattern ties the observed one up to rounding (e.g. all signs flipped).
    extreme = int(np.sum(means >= observed - 1e-12 * max(1.0, observed)))
    p = extreme / len(signs) if exact else (extreme + 1) / (len(signs) + 1)
    return {
        "p": float(min(p, 1.0)),
        "p_min": float(min(1.0, 2.0 / 2**n)),
        "n": n,
        "exact": exact,
        "patterns": len(signs),
    }


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p values, in the order given: the k-th smallest p times
    (m − k + 1), made non-decreasing, capped at 1 (statsmodels' multipletests "holm")."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[index])))
        adjusted[index] = running
    return adjusted


def _interval(mean: float, sd: float, n: int) -> tuple[float, float]:
    half = float(_stats().t.ppf(0.5 + LEVEL / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def _t_test(mean: float, sd: float, n: int) -> dict:
    """One-sample t-test of mean d = 0 with the sd the interval uses (scipy's ttest_1samp
    when that is the observed sd)."""
    t = mean / (sd / math.sqrt(n))
    return {"t": float(t), "p": float(2 * _stats().t.sf(abs(t), n - 1)), "df": n - 1}


def paired_difference(
    diffs: Sequence[float], effect: float | None = None, resolution: float | None = None
) -> dict:
    """What a study says of its per-seed differences d (in points): mean, sd, 95% CI,
    outcome, one-sample t-test, the exact detectable effect at n, the power at the effect,
    and the seeds the effect would need (default: the observed |mean|, or the detectable
    effect when that is ~0) with their range over the sd's own interval.

    `resolution` (points) is the smallest step the metric takes on this test set: an sd
    below it is raised to it ("floored"), so seeds that all give the same d make an
    interval of the metric's grain, not of zero width. Without a resolution such seeds give
    no interval at all (`no_spread`): too few, add seeds."""
    d = [float(x) for x in diffs]
    n = len(d)
    summary = mean_sd(d)
    sd = summary["sd"]
    floored = sd is not None and resolution is not None and sd < resolution
    sd_used = resolution if floored else sd
    no_spread = sd_used is not None and sd_used <= ZERO
    out = {
        **summary,
        "level": LEVEL,
        "low": None,
        "high": None,
        "sd_used": None if no_spread else sd_used,
        "resolution": resolution,
        "floored": bool(floored),
        "no_spread": no_spread,
        "t_test": None,
    }
    if n >= 2 and sd_used is not None and not no_spread:
        out["low"], out["high"] = _interval(summary["mean"], sd_used, n)
        out["t_test"] = _t_test(summary["mean"], sd_used, n)
    return {**out, "outcome": judge(out), **_power(out, effect)}


def _power(diff: dict, effect: float | None) -> dict:
    """The exact power figures of a difference at its sd (None without an interval)."""
    n, sd, mean = diff["n"], diff["sd_used"], diff["mean"]
    judged = diff["low"] is not None
    detectable = power.mde(sd, n) if judged else None
    chosen = effect is not None and effect > 0
    # Where the effect comes from: power at the observed |mean d| only restates the p value
    # (post-hoc power), so the page says when that is what it shows.
    source = "asked" if chosen else "observed"
    if not chosen:
        observed = mean is not None and abs(mean) > ZERO
        effect, source = (abs(mean), source) if observed else (detectable, "detectable")
    effect = effect if judged else None
    return {
        "mde": detectable,
        "effect": effect,
        "effect_asked": chosen,
        "effect_from": source if judged else None,
        "power_at_effect": power.power(effect, sd, n) if judged and effect else None,
        "seeds_needed": power.seeds_needed(sd, effect) if judged else None,
        "seeds_range": power.seeds_range(sd, n, effect) if judged else None,
        "seeds_cap": power.SEEDS_CAP,
        "alpha": power.ALPHA,
        "power": power.POWER,
    }
