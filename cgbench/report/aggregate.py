"""Pure statistics over seeds: no MLflow, no I/O.

* :func:`aggregate`: mean, sample standard deviation (n−1), the half-width of the 95% confidence
  interval of the mean (Student t with n−1 degrees of freedom) and n.
* :func:`welch_p`: two-sided Welch t-test (unequal variances) of two samples; None when either has
  fewer than 2 values.
* :func:`compare`: one row against another over seeds, by the test their seeds allow (a
  :class:`Comparison`): the **paired t-test** on the per-seed differences where at least two seeds
  are shared, Welch's test where they are not.
* :func:`holm`: Holm's step-down adjusted p-values of a family of tests.

Why the paired t-test. The rows of one seed share their initial weights and their data order, so a
seed's rows differ by the method alone: the per-seed differences remove the seed's own luck, which
Welch's test counts as noise. Why not a resampling test at the budget we run (n = 3 seeds): the
sign-flip (permutation) test of 3 differences has 2³ = 8 equally likely sign patterns, so its
smallest two-sided p is 2/8 = 0.25 (one-sided 0.125): it can never show anything at 0.05; and a
paired bootstrap of 3 differences has 10 distinct resamples whose spread underestimates the mean's
(by a factor (n−1)/n in variance, with normal instead of t quantiles), so its intervals are too
narrow and its p too small. The t-test assumes the differences are roughly normal, which 3 values
cannot check, but it is exact under that assumption and honest about n through its n−1 degrees of
freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

CONFIDENCE = 0.95
ALPHA = 0.05

PAIRED = "paired-t"  # the t-test on per-seed (or per-FCN) differences
WELCH = "welch"  # Welch's unequal-variance t-test of two independent samples


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample standard deviation (ddof 1); nan when n < 2
    ci: float  # half-width of the 95% confidence interval of the mean; nan when n < 2
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.ci

    @property
    def high(self) -> float:
        return self.mean + self.ci


def _t_quantile(q: float, df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df))


def _clean(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def _sd(xs: Sequence[float]) -> float:
    mean = math.fsum(xs) / len(xs)
    return math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def aggregate(values: Iterable[float], confidence: float = CONFIDENCE) -> Stat:
    """Mean, sample std, t-interval half-width and count of ``values`` (NaNs are dropped)."""
    xs = _clean(values)
    n = len(xs)
    if n == 0:
        return Stat(math.nan, math.nan, math.nan, 0)
    mean = math.fsum(xs) / n
    if n < 2:
        return Stat(mean, math.nan, math.nan, 1)
    std = _sd(xs)
    return Stat(mean, std, _t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n), n)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p of Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``).

    None when either sample has fewer than 2 values (not testable). When neither sample varies,
    the test's limit (as :attr:`Comparison.p`): 0 for two different constants, 1 for the same one.
    """
    return welch(a, b).p


@dataclass(frozen=True)
class Comparison:
    """Sample a against sample b: the mean difference a − b, its standard error and the t
    distribution it is tested with. ``test`` is :data:`PAIRED`, :data:`WELCH`, or "" where
    nothing could be tested (fewer than 2 values, or pairs); ``n`` is the number of pairs
    (paired) or the smaller sample (Welch)."""

    test: str
    n: int
    diff_mean: float
    se: float = math.nan  # standard error of diff_mean; nan when not testable
    df: float = math.nan  # degrees of freedom

    @property
    def testable(self) -> bool:
        return self.n >= 2

    @property
    def p(self) -> float | None:
        """Two-sided p (None: not testable). With no spread at all, the test's limit: 0 where the
        difference is not 0 (the t statistic is infinite, as scipy has it), 1 where it is 0."""
        if not self.testable:
            return None
        if self.se == 0:
            return 1.0 if self.diff_mean == 0 else 0.0
        from scipy import stats

        return float(2 * stats.t.sf(abs(self.diff_mean / self.se), self.df))

    @property
    def p_greater(self) -> float | None:
        """One-sided p of H1: a − b > 0 (None: not testable; without spread, 0 where a − b > 0, else 1)."""
        if not self.testable:
            return None
        if self.se == 0:
            return 0.0 if self.diff_mean > 0 else 1.0
        from scipy import stats

        return float(stats.t.sf(self.diff_mean / self.se, self.df))

    @property
    def p_paired(self) -> float | None:
        return self.p if self.test == PAIRED else None

    def diff_ci(self, confidence: float = CONFIDENCE) -> float:
        """Half-width of the two-sided t interval of the mean difference (nan: not testable)."""
        return self.resolvable(1 - confidence)

    def resolvable(self, alpha: float) -> float:
        """The smallest mean difference a two-sided test at level ``alpha`` would find with this
        spread and n: t_{1−alpha/2, df} · se (nan: not testable)."""
        return _t_quantile(1 - alpha / 2, self.df) * self.se if self.testable else math.nan

    def reversed(self) -> Comparison:
        """b against a: the same test with the difference's sign turned."""
        return replace(self, diff_mean=-self.diff_mean)


def paired(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """The paired t-test of a[i] against b[i] (``scipy.stats.ttest_rel``): the one-sample t-test
    of the differences against 0. Pairs with a NaN are dropped."""
    diffs = [x - y for x, y in zip(_nan_none(a), _nan_none(b)) if x is not None and y is not None]
    n = len(diffs)
    if n < 2:
        return Comparison("", n, diffs[0] if n else math.nan)
    return Comparison(PAIRED, n, math.fsum(diffs) / n, _sd(diffs) / math.sqrt(n), n - 1)


def _nan_none(values: Sequence[float]) -> list[float | None]:
    return [None if v is None or math.isnan(float(v)) else float(v) for v in values]


def welch(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Welch's t-test of two independent samples (Welch–Satterthwaite degrees of freedom)."""
    a, b = _clean(a), _clean(b)
    n = min(len(a), len(b))
    diff = (math.fsum(a) / len(a) - math.fsum(b) / len(b)) if n else math.nan
    if n < 2:
        return Comparison("", n, diff)
    va, vb = _sd(a) ** 2 / len(a), _sd(b) ** 2 / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else math.inf
    return Comparison(WELCH, n, diff, se, df)


def compare(a: Sequence[tuple[str, float]], b: Sequence[tuple[str, float]]) -> Comparison:
    """Sample a (seed, value) against sample b: paired over the seeds both have where they share
    at least 2 (the rows of one seed share initial weights and data order), else Welch over all
    values. A seed "" (a run scored from images or a checkpoint made elsewhere) pairs with nothing."""
    by_seed_b = {seed: value for seed, value in b if seed}
    shared = [(value, by_seed_b[seed]) for seed, value in a if seed and seed in by_seed_b]
    if len(shared) >= 2:
        return paired([x for x, _ in shared], [y for _, y in shared])
    return welch([v for _, v in a], [v for _, v in b])


def holm(ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the k-th smallest raw p is
    multiplied by (m − k + 1), then made non-decreasing along the order and capped at 1."""
    m = len(ps)
    adjusted = [0.0] * m
    running = 0.0
    for k, i in enumerate(sorted(range(m), key=lambda i: ps[i])):
        running = max(running, min(1.0, (m - k) * ps[i]))
        adjusted[i] = running
    return adjusted


def significant(p: float | None, alpha: float = ALPHA) -> bool:
    return p is not None and not math.isnan(p) and p < alpha
