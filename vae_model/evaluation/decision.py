"""What paired differences over seeds support, and how many seeds would settle the question.

Three answers at α = 0.05 for a margin δ (nats per image): one estimator is *better* (the 95%
t-interval of the mean difference excludes 0), the two are *equivalent* within ±δ (two one-sided
tests, TOST: the 90% t-interval lies inside (−δ, +δ)), or the data are *inconclusive*. Seeds
needed, from the observed sd of the differences: for 80% power to detect a difference of δ with
the paired t-test (statsmodels), and to establish equivalence within ±δ with TOST when the true
difference is 0 (its exact power, by integration over the sample sd with scipy). Method and
references: ``docs/method.md``.
"""

from __future__ import annotations

import math
import shlex

import numpy as np

from vae_model.model.config import ESTIMATORS, ModelConfig

ALPHA = 0.05
POWER = 0.8
DEFAULT_MARGIN = 1.0  # nats per image
MAX_SEEDS = 100_000  # beyond this, "more than" is all that is worth saying
DECISIONS = ("better", "equivalent", "inconclusive", "one seed")


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


def t_test_power(n: int, sd: float, margin: float) -> float:
    """Power of the two-sided paired t-test at α = 0.05 with ``n`` pairs against a true
    difference of ``margin`` (statsmodels' noncentral-t power)."""
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().power(effect_size=margin / sd, nobs=n, alpha=ALPHA,
                                    alternative="two-sided"))


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
    df, t = n - 1, stats.t.ppf(1 - ALPHA, n - 1)
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
           margin: float) -> dict:
    """The contract's fields for one paired quantity: ``ci90``, ``equivalence_margin``,
    ``equivalent``, ``decision`` (one of DECISIONS) and ``seeds_needed`` ({"detect",
    "equivalence"}, None with one seed)."""
    if ci95 is None or ci90 is None or sd is None:
        return {"ci90": None, "equivalence_margin": margin, "equivalent": False,
                "decision": "one seed", "seeds_needed": None}
    return {"ci90": ci90, "equivalence_margin": margin,
            "equivalent": _within(ci90, margin),
            "decision": classify(ci95, ci90, margin),
            "seeds_needed": {"detect": detect_seeds(sd, margin),
                             "equivalence": equivalence_seeds(sd, margin)}}


def not_ruled_out(ci95: list) -> float:
    """The largest difference either way that the 95% interval leaves possible."""
    return float(np.max(np.abs(ci95)))


def _seeds_phrase(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _interval(ci: list) -> str:
    return f"{ci[0]:+.2f} to {ci[1]:+.2f}"


def _advice(pair: dict, add_seeds) -> str:
    """How many seeds would settle an inconclusive comparison, and the command that adds them."""
    n, margin, needed = len(pair["seeds"]), pair["equivalence_margin"], pair["seeds_needed"]
    if needed["detect"] > n:
        total, goal = needed["detect"], f"detect a {margin:g}-nat difference"
    elif needed["equivalence"] > n:
        total, goal = needed["equivalence"], f"establish equivalence within ±{margin:g} nats"
    else:
        return "more seeds would narrow the interval"
    text = f"about {total} seeds would {goal}"
    if add_seeds is not None and total < MAX_SEEDS:
        seeds = list(pair["seeds"])
        seeds += [s for s in range(total + len(seeds)) if s not in seeds][:total - len(seeds)]
        text += (f"; add seeds to this run with `{add_seeds(sorted(seeds))}` (its trained "
                 "models are reused)")
    return text


def _pair_verdict(pair: dict, add_seeds=None) -> str:
    a, b = pair["estimators"]
    seeds = pair["seeds"]
    if not seeds:
        return f"no seed was trained with both {a} and {b} KL: nothing to compare"
    n, margin = len(seeds), pair["equivalence_margin"]
    if pair["decision"] == "one seed":
        only = pair["per_seed"][0]
        stderr = only["per_image_stderr"]
        noise = ("not available" if stderr is None else f"{stderr:.2f}")
        return (f"one seed gives no interval over seeds: {a} minus {b} held-out -ELBO is "
                f"{only['difference']:+.2f} nats for seed {only['seed']} (per-image standard "
                f"error {noise}), which says nothing about seed-to-seed variation: run more "
                "seeds")
    mean, ci95, ci90 = pair["mean_difference"], pair["ci95"], pair["ci90"]
    if pair["decision"] == "better":
        better = pair["better"]
        sign = -1.0 if better == a else 1.0  # the winner's advantage is positive
        low, high = sorted((sign * ci95[0], sign * ci95[1]))
        text = (f"{better} KL better by {sign * mean:.2f} nats held-out -ELBO (95% CI "
                f"{low:.2f} to {high:.2f}, {_seeds_phrase(n)})")
        if pair["equivalent"]:
            text += f", a difference within ±{margin:g} nats (90% CI {_interval(ci90)})"
    elif pair["decision"] == "equivalent":
        text = (f"equivalent within ±{margin:g} nats held-out -ELBO (90% CI {_interval(ci90)}, "
                f"{a} minus {b}, {_seeds_phrase(n)})")
    else:
        text = (f"inconclusive with {_seeds_phrase(n)}: differences up to "
                f"{not_ruled_out(ci95):.2f} nats held-out -ELBO are not ruled out (95% CI "
                f"{_interval(ci95)}, {a} minus {b}); {_advice(pair, add_seeds)}")
    return text + _model_or_bound(pair)


def _model_or_bound(pair: dict) -> str:
    """Where the true likelihood is known: whether the -ELBO's verdict is about the models or
    only about the bound (the -ELBO difference minus the reference NLL's is the difference in
    inference gaps)."""
    reference = pair.get("reference_nll")
    if not reference or reference["decision"] == "one seed":
        return ""
    ci95, margin = reference["ci95"], reference["equivalence_margin"]
    gap = pair["mean_difference"] - reference["mean_difference"]
    if reference["decision"] == "better":
        found = (f"{winner(pair['estimators'], ci95)} KL gives the better model (95% CI "
                 f"{_interval(ci95)})")
    elif reference["decision"] == "equivalent":
        found = (f"the models are equivalent within ±{margin:g} nats (90% CI "
                 f"{_interval(reference['ci90'])})")
    else:
        found = f"no difference in the models is established (95% CI {_interval(ci95)})"
    return (f"; in true likelihood (reference NLL) {found}, and the inference gaps differ by "
            f"{gap:+.2f} nats")


def verdict(by_estimator: dict, paired: list[dict], add_seeds=None) -> str:
    """One sentence on what one configuration's scores support (nats per image, lower -ELBO is
    better): better, equivalent or inconclusive (with the seeds that would settle it); for one
    seed, that there is no interval over seeds."""
    if len(by_estimator) < 2:
        if not by_estimator:
            return "no models: nothing to compare"
        (estimator, entry), = by_estimator.items()
        return (f"only the {estimator} KL was trained ({_seeds_phrase(len(entry['seeds']))}): "
                "nothing to compare")
    return "; ".join(_pair_verdict(pair, add_seeds) for pair in paired)


def outcome(pair: dict | None, label=str) -> str:
    """A pair's decision in a few words, for tables and counts (``label``: an estimator's
    name as shown)."""
    if not pair or not pair.get("seeds"):
        return "nothing to compare"
    if len(pair["seeds"]) == 1:
        return "one seed only (no interval)"
    if pair.get("better"):
        return f"{label(pair['better'])} better"
    return pair.get("decision", "no difference detectable")  # runs from before the decision


def summary_verdict(blocks: list[dict]) -> str:
    """Across configurations: how many had each outcome of their first pair, e.g. "analytic
    better in 1 of 4 configurations, equivalent in 2, inconclusive in 1"."""
    counts = {}
    for block in blocks:
        found = outcome((block["paired"] or [None])[0])
        counts[found] = counts.get(found, 0) + 1
    order = sorted(counts, key=lambda o: (not o.endswith(" better"), list(counts).index(o)))
    parts = [f"{o} in {counts[o]}" for o in order]
    parts[0] += f" of {len(blocks)} configurations"
    return ", ".join(parts)


def add_seeds_command(run_id: str, parameters: dict):
    """The command that adds seeds to run ``run_id`` with its other settings, so that its
    trained and evaluated models come back Cached: ``seeds -> "vae-pipeline run ..."``."""
    defaults = ModelConfig()
    flags = []
    for name, default in (("estimators", list(ESTIMATORS)), ("architectures", ["mlp"]),
                          ("likelihoods", ["bernoulli"]), ("latent_sizes", [2]),
                          ("epochs", defaults.epochs), ("batch_size", defaults.batch_size),
                          ("learning_rate", defaults.learning_rate), ("iwae_k", 100),
                          ("gradient_draws", 100), ("train_limit", None),
                          ("equivalence_margin", DEFAULT_MARGIN), ("data_dir", None),
                          ("artifacts_dir", "artifacts"), ("all_model_figures", False)):
        value = parameters.get(name, default)
        if value != default:
            shown = " ".join(map(str, value)) if isinstance(value, list) else (
                "" if value is True else shlex.quote(str(value)))
            flags.append(f"--{name.replace('_', '-')} {shown}".rstrip())
    return lambda seeds: " ".join(["vae-pipeline run --run-id", run_id, "--seeds",
                                   *map(str, seeds), *flags])
