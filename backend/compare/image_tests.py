"""Tests on per-image correctness: they count test images, not seeds, as replicates.

Each answers a question about *these trained networks on this one test set*, never about
the factor (that needs the spread over seeds: the study's interval and the sign-flip test):

- McNemar per seed: do the two networks of one seed differ on this test set?
- McNemar pooled over seeds (matched pairs, one stratum per seed-and-image): summed over
  seeds, did the treatment networks get right more images than the baseline ones? Every
  image of every seed counts as an independent matched pair, and the same test image in
  several seeds counts several times.
- Cochran–Mantel–Haenszel over seeds (one stratum per seed, a 2×2 table arm × right/wrong
  over that seed's images): do the arms' accuracies differ on this test set, seed by seed
  pooled? Truly stratified per seed, but every image is still a replicate and the image
  pairing of the two arms is ignored.

Pure: arrays in, numbers out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

# Per-sample correctness of one classifier: a list or a boolean array.
Flags = Sequence[bool] | npt.NDArray[np.bool_]
Pair = tuple[Flags, Flags]  # (baseline, treatment) correctness on the same images

NOT_THE_FACTOR = (
    "Not a test of the factor: it counts test images as replicates and ignores how much "
    "seeds differ; the verdict's interval over seeds is the test of the factor."
)


def _stats():
    from scipy import stats

    return stats


def same_shape(a: Flags, b: Flags) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.shape != y.shape:
        raise ValueError("both classifiers must be scored on the same samples")
    return x, y


def mcnemar(correct_a: Flags, correct_b: Flags) -> dict:
    """McNemar's test on paired per-sample correctness of two classifiers on the same set.

    b = only A right, c = only B right. Exact: two-sided binomial test of b out of b + c at
    1/2. Corrected: chi-square with Yates' continuity correction, (|b - c| - 1)^2 / (b + c).
    """
    a, b_ = same_shape(correct_a, correct_b)
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


def pooled_mcnemar(pairs: Sequence[Pair]) -> dict | None:
    """McNemar over all seeds' matched image pairs (Cochran–Mantel–Haenszel with one stratum
    per seed-and-image): with b_k = images only the baseline of seed k got right and c_k =
    only its treatment, χ² = (Σ(b_k − c_k))² / Σ(b_k + c_k), df 1; also with the continuity
    correction (|Σ(b_k − c_k)| − 1)² / Σ(b_k + c_k). None without seeds."""
    if not pairs:
        return None
    b = c = n_images = 0
    for baseline, treatment in pairs:
        base, treat = same_shape(baseline, treatment)
        b += int(np.sum(base & ~treat))
        c += int(np.sum(~base & treat))
        n_images += int(base.size)
    out = {
        "strata": len(pairs),
        "images": n_images,
        "only_baseline": b,
        "only_treatment": c,
        "stratified_by": "seed and image",
    }
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


def seed_cmh(pairs: Sequence[Pair]) -> dict | None:
    """Cochran–Mantel–Haenszel test with one stratum per seed: seed k's 2×2 table has the
    arms as rows (baseline, treatment) and right / wrong over its N_k images as columns.
    With a_k the baseline's right count, E_k = n1·m1 / T and V_k = n1·n2·m1·m2 / (T²(T − 1))
    (T = 2N_k), χ² = (Σ(a_k − E_k))² / ΣV_k, df 1, without and with the 0.5 correction (as
    statsmodels' StratifiedTable.test_null_odds). None without seeds."""
    if not pairs:
        return None
    excess = variance = 0.0
    right_base = right_treat = n_images = 0
    for baseline, treatment in pairs:
        base, treat = same_shape(baseline, treatment)
        size = int(base.size)
        a, t = int(base.sum()), int(treat.sum())
        total, right = 2 * size, a + t
        excess += a - size * right / total
        if total > 1:
            variance += size * size * right * (total - right) / (total**2 * (total - 1))
        right_base, right_treat, n_images = right_base + a, right_treat + t, n_images + size
    out = {
        "strata": len(pairs),
        "images": n_images,
        "right_baseline": right_base,
        "right_treatment": right_treat,
        "stratified_by": "seed",
    }
    if variance == 0:
        return {**out, "chi2": 0.0, "p": 1.0, "chi2_corrected": 0.0, "p_corrected": 1.0}
    chi2 = excess**2 / variance
    corrected = max(abs(excess) - 0.5, 0.0) ** 2 / variance
    return {
        **out,
        "chi2": float(chi2),
        "p": float(_stats().chi2.sf(chi2, 1)),
        "chi2_corrected": float(corrected),
        "p_corrected": float(_stats().chi2.sf(corrected, 1)),
    }
