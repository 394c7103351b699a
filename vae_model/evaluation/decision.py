"""What paired differences over seeds support, and how many seeds would settle the question.

Three answers at α = 0.05 for a margin δ (nats per image): one estimator is *better* (the 95%
t-interval of the mean difference excludes 0), the two are *equivalent* within ±δ (two one-sided
tests, TOST: the 90% t-interval lies inside (−δ, +δ)), or the data are *inconclusive*. Seeds
needed, from the observed sd of the differences: for 80% power to detect a difference of δ with
the paired t-test (statsmodels), and to establish equivalence within ±δ with TOST when the true
difference is 0 (its exact power, by integration over the sample sd with scipy). The sentences
built on these are in :mod:`.verdict`; method and references: ``docs/method.md``.
"""

from __future__ import annotations

import functools
import math

ALPHA = 0.05
POWER = 0.8
DEFAULT_MARGIN = 1.0  # nats per image
MAX_SEEDS = 100_000  # beyond this, "more than" is all that is worth saying
DECISIONS = ("better", "equivalent", "inconclusive", "one seed")


@functools.lru_cache(maxsize=None)
def t_quantile(probability: float, df: int) -> float:
    """Student-t quantile: t_{0.975, 2} = 4.3027."""
    from scipy import stats

    return float(stats.t.ppf(probability, df))


def check_margin(margin: float) -> float:
    """Refuse a margin that is not a finite number > 0 (from Python as from the CLI)."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"the equivalence margin must be a finite number > 0, got {margin!r}")
    return float(margin)


def _fewest(power) -> int:
    """The fewest pairs n >= 2 with ``power(n)`` >= POWER (power rises with n), at most
    MAX_SEEDS."""
    high = 2
    while power(high) < POWER:
        if high >= MAX_SEEDS:
            return MAX_SEEDS
        high = min(2 * high, MAX_SEEDS)
    low = max(2, high // 2)
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if power(middle) < POWER else (low, middle)
    return high


def _t_test_power_exact(n: int, sd: float, margin: float) -> float:
    """The same power by integration over the chi-square law of the sample variance: P(|Z +
    λ| > c·√(U/df)), λ = margin·√n/sd, U ~ χ²(df)."""
    from scipy import integrate, stats

    df, c, shift = n - 1, t_quantile(1 - ALPHA / 2, n - 1), margin * math.sqrt(n) / sd

    def given(u):
        bound = c * math.sqrt(u / df)
        return (stats.norm.sf(bound - shift) + stats.norm.cdf(-bound - shift)) * stats.chi2.pdf(
            u, df)

    power, _ = integrate.quad(given, 0, math.inf, limit=200)
    return float(min(max(power, 0.0), 1.0))


def t_test_power(n: int, sd: float, margin: float) -> float:
    """Power of the two-sided paired t-test at α = 0.05 with ``n`` pairs against a true
    difference of ``margin`` (statsmodels' noncentral-t power; where scipy's noncentral t
    gives NaN, for large noncentrality, the exact integral)."""
    from statsmodels.stats.power import TTestPower

    power = float(TTestPower().power(effect_size=margin / sd, nobs=n, alpha=ALPHA,
                                     alternative="two-sided"))
    return power if math.isfinite(power) else _t_test_power_exact(n, sd, margin)


def detect_seeds(sd: float, margin: float) -> int:
    """Pairs for 80% power to detect a true difference of ``margin`` with the two-sided paired
    t-test at α = 0.05, for differences of standard deviation ``sd`` (at least 2)."""
    return 2 if sd == 0 else _fewest(lambda n: t_test_power(n, sd, margin))


def tost_power(n: int, sd: float, margin: float) -> float:
    """The probability that TOST at α = 0.05 establishes equivalence within ±``margin`` from
    ``n`` pairs whose true mean difference is 0 and whose sd is ``sd``: P(|mean| + t·s/√n <
    margin), integrated exactly over the chi-square law of the sample variance."""
    from scipy import integrate, stats

    if sd == 0:
        return 1.0
    df, t = n - 1, t_quantile(1 - ALPHA, n - 1)
    se = sd / math.sqrt(n)  # of the mean

    def given(u):  # u = df · s² / sd², chi-square with df degrees of freedom
        room = margin - t * se * math.sqrt(u / df)
        return (2 * stats.norm.cdf(room / se) - 1) * stats.chi2.pdf(u, df) if room > 0 else 0.0

    top = df * (margin / (t * se)) ** 2  # beyond it, no mean passes
    power, _ = integrate.quad(given, 0, top, limit=200)
    return float(min(max(power, 0.0), 1.0))


def equivalence_seeds(sd: float, margin: float) -> int:
    """The fewest pairs (at least 2) for 80% TOST power within ±``margin`` (true difference 0)."""
    return 2 if sd == 0 else _fewest(lambda n: tost_power(n, sd, margin))


def _within(ci90: list, margin: float) -> bool:
    return bool(-margin < ci90[0] and ci90[1] < margin)


def classify(ci95: list | None, ci90: list | None, margin: float) -> str:
    """One of DECISIONS, from the 95% and 90% intervals of a mean difference."""
    if ci95 is None or ci90 is None:
        return "one seed"
    if ci95[1] < 0 or ci95[0] > 0:
        return "better"
    return "equivalent" if _within(ci90, margin) else "inconclusive"


def winner(estimators: list[str], ci95: list | None) -> str | None:
    """Of the pair (a, b) whose difference a - b has the 95% interval ``ci95``: the estimator
    with the lower score when the interval excludes 0, else None."""
    if ci95 is None:
        return None
    a, b = estimators
    return a if ci95[1] < 0 else b if ci95[0] > 0 else None


def decide(mean: float | None, ci95: list | None, ci90: list | None, sd: float | None,
           margin: float, decisive: tuple[list, list] | None = None) -> dict:
    """The contract's fields for one paired quantity: ``ci90``, ``equivalence_margin``,
    ``equivalent``, ``decision`` (one of DECISIONS) and ``seeds_needed`` ({"detect",
    "equivalence"}, None with one seed). ``decisive``: the (95%, 90%) intervals the decision is
    taken from, when they differ from the reported ones (a Bonferroni-adjusted plan)."""
    check_margin(margin)
    if ci95 is None or ci90 is None or sd is None:
        return {"ci90": None, "equivalence_margin": margin, "equivalent": False,
                "decision": "one seed", "seeds_needed": None}
    ci95_used, ci90_used = decisive or (ci95, ci90)
    return {"ci90": ci90, "equivalence_margin": margin,
            "equivalent": _within(ci90_used, margin),
            "decision": classify(ci95_used, ci90_used, margin),
            "seeds_needed": {"detect": detect_seeds(sd, margin),
                             "equivalence": equivalence_seeds(sd, margin)}}


def equivalence_count_applies(quantity: dict) -> bool:
    """The equivalence seed count assumes a true difference of 0: it misleads when the observed
    mean already lies outside ±margin."""
    mean = quantity.get("mean_difference")
    return mean is not None and abs(mean) < quantity["equivalence_margin"]
