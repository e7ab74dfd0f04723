"""Small statistics for comparing runs and judging ablation studies.

Mean ± sd, Student-t confidence intervals, the paired t-test, McNemar's test of two
classifiers, and for a study (the seed is the unit of replication: one paired difference
d_i = treatment − baseline per seed): the verdict from the CI of mean d, the smallest
effect the study could detect, the seeds a given effect would need, an exact sign-flip
permutation test over seeds, and a McNemar test pooled over seeds (Cochran–Mantel–Haenszel
with one stratum per seed). Pure: numbers in, numbers out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

HELPED, HURT, INCONCLUSIVE, TOO_FEW = "helped", "hurt", "inconclusive", "too_few"
ALPHA, POWER = 0.05, 0.8
# Per-sample correctness of one classifier: a list or a boolean array.
Flags = Sequence[bool] | npt.NDArray[np.bool_]
SEEDS_CAP = 1000  # seeds_needed answers None ("more than this") beyond it
EXACT_FLIPS_UP_TO = 16  # seeds; above, the sign-flip test samples flips at random
SAMPLED_FLIPS = 20_000
ZERO = 1e-9  # a difference this small (in points) counts as none


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


def mcnemar(correct_a: Flags, correct_b: Flags) -> dict:
    """McNemar's test on paired per-sample correctness of two classifiers on the same set.

    b = only A right, c = only B right. Exact: two-sided binomial test of b out of b + c at
    1/2. Corrected: chi-square with Yates' continuity correction, (|b - c| - 1)^2 / (b + c).
    """
    a, b_ = _same_shape(correct_a, correct_b)
    only_a, only_b = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    both, neither = int(np.sum(a & b_)), int(np.sum(~a & ~b_))
    discordant = only_a + only_b
    out = {"both": both, "only_a": only_a, "only_b": only_b, "neither": neither, "n": int(a.size)}
    if discordant == 0:
        return {**out, "p_exact": 1.0, "chi2": 0.0, "p_corrected": 1.0}
    p_exact = float(_stats().binomtest(only_a, discordant, 0.5).pvalue)
    chi2 = max(abs(only_a - only_b) - 1, 0) ** 2 / discordant
    p_corrected = float(_stats().chi2.sf(chi2, 1))
    return {**out, "p_exact": p_exact, "chi2": chi2, "p_corrected": p_corrected}


def judge(ci: dict) -> str:
    """helped / hurt when the CI of mean d excludes 0, inconclusive when it contains 0,
    too_few without an interval (fewer than two seed pairs)."""
    if ci.get("low") is None:
        return TOO_FEW
    if ci["low"] > 0:
        return HELPED
    if ci["high"] < 0:
        return HURT
    return INCONCLUSIVE


def _t_sum(n: int | np.ndarray, alpha: float = ALPHA, power: float = POWER):
    """t_{1-α/2, n-1} + t_{power, n-1}: the paired t's detectable effect in sd / √n units."""
    return _stats().t.ppf(1 - alpha / 2, n - 1) + _stats().t.ppf(power, n - 1)


def mde(sd: float | None, n: int) -> float | None:
    """The smallest true mean difference a paired t-test over n seeds detects with 80% power
    at two-sided α = 0.05, given the sd of the differences: (t_.975 + t_.8) · sd / √n."""
    if sd is None or n < 2:
        return None
    return float(_t_sum(n) * sd / math.sqrt(n))


def seeds_needed(sd: float | None, effect: float | None, cap: int = SEEDS_CAP) -> int | None:
    """The smallest n ≥ 2 whose detectable effect (mde) is at most `effect`; None when even
    `cap` seeds would not do (or there is no sd or no positive effect to aim at)."""
    if sd is None or effect is None or effect <= 0:
        return None
    n = np.arange(2, cap + 1)
    ok = np.flatnonzero(_t_sum(n) * sd / np.sqrt(n) <= effect)
    return int(n[ok[0]]) if ok.size else None


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


def pooled_mcnemar(pairs: Sequence[tuple[Sequence[bool], Sequence[bool]]]) -> dict | None:
    """McNemar pooled over seeds (Cochran–Mantel–Haenszel, one stratum per seed) on per-image
    correctness of (baseline, treatment): with b_k = images only the baseline got right and
    c_k = only the treatment, χ² = (Σ(b_k − c_k))² / Σ(b_k + c_k), df 1; also with the
    continuity correction (|Σ(b_k − c_k)| − 1)² / Σ(b_k + c_k). None without strata."""
    if not pairs:
        return None
    b = c = n_images = 0
    for baseline, treatment in pairs:
        base, treat = _same_shape(baseline, treatment)
        b += int(np.sum(base & ~treat))
        c += int(np.sum(~base & treat))
        n_images += int(base.size)
    out = {"strata": len(pairs), "images": n_images, "only_baseline": b, "only_treatment": c}
    discordant = b + c
    if discordant == 0:
        return {**out, "chi2": 0.0, "p": 1.0, "chi2_corrected": 0.0, "p_corrected": 1.0}
    chi2 = (b - c) ** 2 / discordant
    corrected = max(abs(b - c) - 1, 0) ** 2 / discordant
    return {
        **out,
        "chi2": float(chi2),
        "p": float(_stats().chi2.sf(chi2, 1)),
        "chi2_corrected": float(corrected),
        "p_corrected": float(_stats().chi2.sf(corrected, 1)),
    }


def paired_difference(diffs: Sequence[float], effect: float | None = None) -> dict:
    """What a study says of its per-seed differences d (in points): mean, sd, 95% CI,
    outcome, one-sample t-test, detectable effect at n and the seeds an effect would need
    (default: the observed |mean|, or the mde when that is ~0)."""
    d = [float(x) for x in diffs]
    ci = mean_ci(d)
    n = len(d)
    detectable = mde(ci["sd"], n)
    chosen = effect is not None and effect > 0
    if not chosen:
        effect = abs(ci["mean"]) if ci["mean"] is not None and abs(ci["mean"]) > ZERO else None
        effect = effect if effect is not None else (detectable if detectable else None)
    t_test = paired_t(d, [0.0] * n) if n >= 2 else None
    if t_test is not None and not math.isfinite(t_test["t"]):
        t_test["t"] = None  # every seed the same d: JSON has no infinity
    return {
        **ci,
        "outcome": judge(ci),
        "t_test": t_test,
        "mde": detectable,
        "effect": effect,
        "effect_asked": chosen,
        "seeds_needed": seeds_needed(ci["sd"], effect),
        "seeds_cap": SEEDS_CAP,
        "alpha": ALPHA,
        "power": POWER,
    }


def _same_shape(a: Flags, b: Flags) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.shape != y.shape:
        raise ValueError("both classifiers must be scored on the same samples")
    return x, y
