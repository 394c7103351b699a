"""Error rates of the comparison procedures, by simulation with the pipeline's own functions:
Stein's two-stage plan (:mod:`.plan`: coverage, false "better", false "equivalent", how often
it decides, the seeds it costs), the plan made from seeds already looked at (what the
verdict's advice leads to), and, for contrast, adding the seeds a plain run advises and
looking again (a top-up). Paired differences are drawn from a normal law.

``python -m vae_model.evaluation.simulation`` prints the tables of ``docs/method.md``.
"""

from __future__ import annotations

import functools

import numpy as np

from vae_model.evaluation import decision, plan

DRAWS = 200_000


def _decide(mean, half95, half90, margin: float) -> np.ndarray:
    """decision.classify over arrays of means and interval half-widths."""
    classify = np.vectorize(lambda m, h95, h90: decision.classify(
        [m - h95, m + h95], [m - h90, m + h90], margin), otypes=[object])
    return classify(mean, half95, half90)


def _t_halves(sd, n, confidence_df=None):
    """Half-widths of the plain 95% and 90% t-intervals of n values of sample sd ``sd``."""
    df = n - 1 if confidence_df is None else confidence_df
    return (np.vectorize(decision.t_quantile)(0.975, df) * sd / np.sqrt(n),
            np.vectorize(decision.t_quantile)(0.95, df) * sd / np.sqrt(n))


def _pilot(rng, true_difference: float, sd: float, pilot: int, draws: int, outliers=None):
    centre = true_difference - (outliers[0] * outliers[1] if outliers else 0.0)
    values = rng.normal(centre, sd, size=(draws, pilot))
    if outliers:
        values += outliers[1] * (rng.random(values.shape) < outliers[0])
    return values.mean(1), values.std(1, ddof=1)


def _more(rng, true_difference: float, sd: float, count: np.ndarray,
          outliers=None) -> np.ndarray:
    """The mean of ``count`` further differences (any value where count is 0)."""
    count = np.maximum(count, 1)
    if not outliers:
        return rng.normal(true_difference, sd / np.sqrt(count))
    share, shift = outliers
    centre = true_difference - share * shift
    return rng.normal(centre, sd / np.sqrt(count)) + shift * rng.binomial(count, share) / count


def stein(true_difference: float, sd: float, pilot: int, margin: float = 1.0,
          draws: int = DRAWS, seed: int = 0, comparisons: int = 1,
          looked: bool = False, outliers: tuple[float, float] | None = None) -> dict:
    """The plan's rates: ``coverage`` of its 95% interval, ``better`` and ``equivalent`` (the
    decisions' frequencies), ``decisive``, and the seeds it trains (``mean_seeds``, ``p90``).
    ``looked``: the pilot was a plain run looked at first, and the plan ran only when that
    run was inconclusive (the decisions count both looks). ``outliers``: (share, shift), a
    skewed law: that share of the seeds' differences moved by ``shift`` nats (the mean stays
    ``true_difference``; ``sd`` is then the rest's)."""
    rng = np.random.default_rng(seed)
    mean0, sd0 = _pilot(rng, true_difference, sd, pilot, draws, outliers)
    planned = np.vectorize(plan.seeds_planned)(sd0, pilot, margin, comparisons)
    added = planned - pilot
    mean = (pilot * mean0 + added * _more(rng, true_difference, sd, added, outliers)) / planned
    quantile = functools.partial(plan.quantile, pilot_count=pilot, comparisons=comparisons)
    half95 = quantile(0.95) * sd0 / np.sqrt(planned)
    half90 = quantile(0.90) * sd0 / np.sqrt(planned)
    found = _decide(mean, half95, half90, margin)
    nominal95 = plan.quantile(0.95, pilot) * sd0 / np.sqrt(planned)
    seeds = planned.astype(float)
    if looked:
        first = _decide(mean0, *_t_halves(sd0, pilot), margin)
        settled = first != "inconclusive"
        found = np.where(settled, first, found)
        seeds = np.where(settled, pilot, seeds)
    return {"coverage": float(np.mean(np.abs(mean - true_difference) <= nominal95)),
            "better": float(np.mean(found == "better")),
            "equivalent": float(np.mean(found == "equivalent")),
            "decisive": float(np.mean(found != "inconclusive")),
            "mean_seeds": float(seeds.mean()), "p90_seeds": float(np.percentile(seeds, 90))}


@functools.lru_cache(maxsize=None)
def _advised_total(sd_step: int, pilot: int, margin: float) -> int:
    """The seeds a plain run's verdict advises (detect, else equivalence), for an observed sd
    of ``sd_step`` hundredths (rounded up: the advice is never understated)."""
    sd = sd_step / 100
    detect = decision.detect_seeds(sd, margin)
    return detect if detect > pilot else max(pilot, decision.equivalence_seeds(sd, margin))


def top_up(true_difference: float, sd: float, pilot: int = 3, margin: float = 1.0,
           draws: int = DRAWS, seed: int = 0, largest: int = 200) -> dict:
    """Look at a plain run of ``pilot`` seeds; if inconclusive, add the seeds its verdict
    advises (at most ``largest`` in all) and look again with the plain t-intervals: the rates
    of the final decision."""
    rng = np.random.default_rng(seed)
    mean0, sd0 = _pilot(rng, true_difference, sd, pilot, draws)
    first = _decide(mean0, *_t_halves(sd0, pilot), margin)
    again = first == "inconclusive"
    steps = np.ceil(sd0[again] * 100).astype(int)
    total = np.array([min(largest, _advised_total(int(s), pilot, margin)) for s in steps])
    added = total - pilot
    rest = rng.normal(true_difference, sd, size=(int(again.sum()), largest - pilot))
    columns = np.arange(largest - pilot)
    kept = columns[None, :] < added[:, None]
    # all n values' mean and sd, from the pilot's and the added ones' sums
    total_sum = mean0[again] * pilot + (rest * kept).sum(1)
    total_squares = ((sd0[again] ** 2) * (pilot - 1) + pilot * mean0[again] ** 2
                     + (rest ** 2 * kept).sum(1))
    mean = total_sum / total
    sd_all = np.sqrt(np.maximum(total_squares - total * mean ** 2, 0) / (total - 1))
    found = first.copy()
    found[again] = _decide(mean, *_t_halves(sd_all, total), margin)
    return {"better": float(np.mean(found == "better")),
            "equivalent": float(np.mean(found == "equivalent")),
            "one_look_better": float(np.mean(first == "better"))}


def report(draws: int = DRAWS) -> str:
    """The tables of docs/method.md, as markdown."""
    lines = ["Stein's plan, δ = 1 nat (uncapped; rates over "
             f"{draws:,} simulated comparisons each):", "",
             "| pilot | sd | coverage | better at Δ=0 | equivalent at Δ=δ | decisive at Δ=δ/2 | "
             "mean seeds | 90th percentile |", "|---|---|---|---|---|---|---|---|"]
    for pilot in (3, 5, 8, 10):
        for sd in (0.5, 0.75, 0.9, 1.5):
            zero = stein(0.0, sd, pilot, draws=draws)
            edge = stein(1.0, sd, pilot, draws=draws, seed=1)
            half = stein(0.5, sd, pilot, draws=draws, seed=2)
            lines.append(f"| {pilot} | {sd} | {zero['coverage']:.4f} | {zero['better']:.4f} | "
                         f"{edge['equivalent']:.4f} | {half['decisive']:.4f} | "
                         f"{zero['mean_seeds']:.1f} | {zero['p90_seeds']:.0f} |")
    lines += ["", "Skewed differences: a fifth of the seeds 3 nats lower, the rest sd 0.9 "
              "(overall sd 1.5):", "",
              "| pilot | coverage | better at Δ=0 | equivalent at Δ=δ | mean seeds |",
              "|---|---|---|---|---|"]
    for pilot in (5, 10):
        zero = stein(0.0, 0.9, pilot, draws=draws, outliers=(0.2, -3.0))
        edge = stein(1.0, 0.9, pilot, draws=draws, seed=1, outliers=(0.2, -3.0))
        lines.append(f"| {pilot} | {zero['coverage']:.4f} | {zero['better']:.4f} | "
                     f"{edge['equivalent']:.4f} | {zero['mean_seeds']:.1f} |")
    lines += ["", "A plain run looked at first, then a plan from its seeds if it was "
              "inconclusive (sd 0.8):", "", "| pilot | better at Δ=0 | equivalent at Δ=δ |",
              "|---|---|---|"]
    for pilot in (3, 5):
        zero = stein(0.0, 0.8, pilot, draws=draws, looked=True)
        edge = stein(1.0, 0.8, pilot, draws=draws, seed=1, looked=True)
        lines.append(f"| {pilot} | {zero['better']:.4f} | {edge['equivalent']:.4f} |")
    lines += ["", "Top-up: a plain run of 3 seeds, then the advised seeds added and looked at "
              "again (sd 0.8):", "", "| | better at Δ=0 | equivalent at Δ=δ |", "|---|---|---|"]
    zero, edge = top_up(0.0, 0.8, draws=draws), top_up(1.0, 0.8, draws=draws, seed=1)
    lines.append(f"| one look | {zero['one_look_better']:.4f} | – |")
    lines.append(f"| look, top up, look | {zero['better']:.4f} | {edge['equivalent']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
    print(f"\nexpected seeds at the recommended pilot of {plan.RECOMMENDED_PILOT}, sd 0.75 / "
          f"0.9: " + " / ".join(f"{stein(0.0, sd, plan.RECOMMENDED_PILOT)['mean_seeds']:.1f}"
                                for sd in (0.75, 0.9)))
