"""The verdict in words: one sentence per comparison saying what its decision
(:mod:`.decision`) supports, with the plan that fixed its seeds (:mod:`.plan`) or, for an
inconclusive plain run, the seeds and the command that would settle it."""

from __future__ import annotations

import shlex

import numpy as np

from vae_model.evaluation import decision, plan
from vae_model.model.config import ESTIMATORS, ModelConfig


def not_ruled_out(ci95: list) -> float:
    """The largest difference either way that the 95% interval leaves possible."""
    return float(np.max(np.abs(ci95)))


def _seeds_phrase(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _interval(ci: list) -> str:
    return f"{ci[0]:+.2f} to {ci[1]:+.2f}"


def _advice(pair: dict, add_seeds) -> str:
    """How many seeds would settle an inconclusive comparison, and the commands that add them
    (seeds by hand) or settle it (a plan)."""
    n, margin, needed = len(pair["seeds"]), pair["equivalence_margin"], pair["seeds_needed"]
    if needed["detect"] > n:
        total, goal = needed["detect"], f"detect a {margin:g}-nat difference"
    elif needed["equivalence"] > n and decision.equivalence_count_applies(pair):
        total, goal = needed["equivalence"], f"establish equivalence within ±{margin:g} nats"
    else:
        return "more seeds would narrow the interval"
    if total >= decision.MAX_SEEDS:
        return f"more than {decision.MAX_SEEDS} seeds would be needed to {goal}"
    text = f"about {total} seeds would {goal}"
    if add_seeds is not None:
        seeds = list(pair["seeds"])
        seeds += [s for s in range(total + len(seeds)) if s not in seeds][:total - len(seeds)]
        text += (f"; add seeds to this run with `{add_seeds(seeds)}` (its trained models are "
                 f"reused), or let a plan settle it with stated error rates: "
                 f"`{add_seeds(pair['seeds'], until_decided=True)}`")
    return text


def _plan_phrase(pair: dict) -> str:
    """The plan behind a decision, for the verdict: what it ran, and a cap if it had one."""
    found = pair["plan"]
    if found["capped"]:
        ci95 = deciding(pair)[0]
        half = (ci95[1] - ci95[0]) / 2
        return (f"; capped at {found['max_seeds']} seeds by the plan's --max-seeds: half-width "
                f"{half:.2f} nats against the planned {found['target_half_width']:g}")
    if found["seeds_run"] < plan.target(found):
        return (f"; the plan's stage 2 is not complete ({found['seeds_run']} of "
                f"{plan.target(found)} seeds)")
    return ""


def deciding(quantity: dict) -> tuple[list, list]:
    """The (95%, 90%) intervals a quantity's decision is taken from: the Bonferroni-adjusted
    ones of a plan over several comparisons, else its ``ci95`` and ``ci90``."""
    found = quantity.get("deciding") or quantity
    return found["ci95"], found["ci90"]


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
    mean, planned = pair["mean_difference"], pair.get("plan")
    ci95, ci90 = deciding(pair)
    if "deciding" in pair:  # the intervals the decision is taken from are named so
        a_level = f", Bonferroni over {pair['deciding']['comparisons']}"
        ci95_name, ci90_name = f"95% CI{a_level}", f"90% CI{a_level}"
    else:
        ci95_name, ci90_name = "95% CI", "90% CI"
    if pair["decision"] == "better":
        better = pair["better"]
        sign = -1.0 if better == a else 1.0  # the winner's advantage is positive
        low, high = sorted((sign * ci95[0], sign * ci95[1]))
        text = (f"{better} KL better by {sign * mean:.2f} nats held-out -ELBO ({ci95_name} "
                f"{low:.2f} to {high:.2f}, {_seeds_phrase(n)})")
        if pair["equivalent"]:
            text += f", a difference within ±{margin:g} nats ({ci90_name} {_interval(ci90)})"
    elif pair["decision"] == "equivalent":
        text = (f"equivalent within ±{margin:g} nats held-out -ELBO ({ci90_name} "
                f"{_interval(ci90)}, {a} minus {b}, {_seeds_phrase(n)})")
    else:
        text = (f"inconclusive with {_seeds_phrase(n)}: differences up to "
                f"{not_ruled_out(ci95):.2f} nats held-out -ELBO are not ruled out ({ci95_name} "
                f"{_interval(ci95)}, {a} minus {b})")
        if not planned:
            text += f"; {_advice(pair, add_seeds)}"
    if planned:
        text += _plan_phrase(pair)
    if n >= 2 and pair.get("std") == 0:
        text += (f"; all {n} differences are identical, which usually means the two "
                 "estimators' models were not trained independently: check the run")
    return text + _model_or_bound(pair)


def _model_or_bound(pair: dict) -> str:
    """Where the true likelihood is known: whether the -ELBO's verdict is about the models or
    only about the bound (the -ELBO difference minus the reference NLL's is the difference in
    inference gaps)."""
    reference = pair.get("reference_nll")
    if not reference or reference["decision"] == "one seed":
        return ""
    (ci95, ci90), margin = deciding(reference), reference["equivalence_margin"]
    gap = pair["mean_difference"] - reference["mean_difference"]
    if reference["decision"] == "better":
        found = (f"{decision.winner(pair['estimators'], ci95)} KL gives the better model (95% "
                 f"CI {_interval(ci95)})")
    elif reference["decision"] == "equivalent":
        found = (f"the models are equivalent within ±{margin:g} nats (90% CI "
                 f"{_interval(ci90)})")
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
    return pair["decision"]


def summary_verdict(blocks: list[dict]) -> str:
    """Across configurations: how many had each outcome of their first pair, e.g. "analytic
    better in 1 of 4 configurations, equivalent in 2, inconclusive in 1"; with a plan, how the
    error rates are held across them."""
    counts = {}
    for block in blocks:
        found = outcome((block["paired"] or [None])[0])
        counts[found] = counts.get(found, 0) + 1
    order = sorted(counts, key=lambda o: (not o.endswith(" better"), list(counts).index(o)))
    parts = [f"{o} in {counts[o]}" for o in order]
    parts[0] += f" of {len(blocks)} configurations"
    text = ", ".join(parts)
    plans = [p["plan"] for b in blocks for p in b["paired"] if p.get("plan")]
    if plans and plans[0]["adjustment"]:
        text += (f" (each decided at α = {decision.ALPHA}/{plans[0]['comparisons']}, Bonferroni:"
                 " at most 5% chance of any false 'better' and of any false 'equivalent')")
    return text


def plan_lines(blocks: list[dict], title=lambda block: "") -> list[str]:
    """One line per planned comparison: "pilot 10 seeds, sd 0.62 → 10 seeds planned, 10 run"
    (prefixed by ``title(block)`` when there are several)."""
    lines = []
    for block in blocks:
        for pair in block["paired"]:
            if pair.get("plan"):
                prefix = f"{title(block)}: " if len(blocks) > 1 and title(block) else ""
                lines.append(prefix + plan.summary(pair["plan"]))
    return lines


def add_seeds_command(run_id: str, parameters: dict):
    """The command that adds seeds to run ``run_id`` with its other settings, so that its
    trained and evaluated models come back Cached: ``(seeds, until_decided=False) ->
    "vae-pipeline run ..."``; with ``until_decided``, the seeds are the plan's pilot."""
    defaults = ModelConfig()
    flags = []
    for name, default in (("estimators", list(ESTIMATORS)), ("architectures", ["mlp"]),
                          ("likelihoods", ["bernoulli"]), ("latent_sizes", [2]),
                          ("epochs", defaults.epochs), ("batch_size", defaults.batch_size),
                          ("learning_rate", defaults.learning_rate), ("iwae_k", 100),
                          ("gradient_draws", 100), ("train_limit", None),
                          ("equivalence_margin", decision.DEFAULT_MARGIN),
                          ("max_seeds", plan.DEFAULT_MAX_SEEDS), ("data_dir", None),
                          ("artifacts_dir", "artifacts"), ("all_model_figures", False)):
        value = parameters.get(name, default)
        if value != default:
            shown = " ".join(map(str, value)) if isinstance(value, list) else (
                "" if value is True else shlex.quote(str(value)))
            flags.append(f"--{name.replace('_', '-')} {shown}".rstrip())

    def command(seeds, until_decided: bool = False) -> str:
        more = ["--until-decided"] if until_decided else []
        if until_decided and len(set(seeds)) > parameters.get("max_seeds",
                                                              plan.DEFAULT_MAX_SEEDS):
            more.append(f"--max-seeds {len(set(seeds))}")  # a bound below the pilot is refused
        return " ".join(["vae-pipeline run --run-id", run_id, "--seeds", plan.seed_ranges(seeds),
                         *more, *flags])
    return command
