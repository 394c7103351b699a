"""Stein's two-stage plan (Stein 1945): from a pilot's paired differences, the total number of
seeds whose interval is narrow enough to decide, and the interval that the plan makes valid.

With n0 pilot seeds of sample sd s0, the plan takes n = max(n0, ⌈(t₀.₉₇₅,ₙ₀₋₁ · s0 / (δ/2))²⌉)
seeds in all; the interval is the mean of all n differences ± t_{q, n0−1} · s0 / √n. Its
half-width is at most δ/2 whatever the true difference, so the 95% interval excludes 0 or the
90% interval lies inside ±δ: the outcome is decisive. Because n depends on the pilot only
through s0, the interval has its nominal coverage exactly (for normal differences). With m
comparisons in one run (a sweep's configurations), each is planned and decided at α/m
(Bonferroni), which keeps the chance of any false "better" and of any false "equivalent" at
most α each, and keeps every decision decisive. Error rates by simulation:
:mod:`vae_model.evaluation.simulation`; method: ``docs/method.md``.
"""

from __future__ import annotations

import math

import numpy as np

from vae_model import UserInputError
from vae_model.evaluation.decision import ALPHA, t_quantile

PROCEDURE = "stein-two-stage"
DEFAULT_MAX_SEEDS = 50  # a bound on the total; the plan says when it is reached
RECOMMENDED_PILOT = 10  # the fewest expected seeds in all at sd 0.75-0.9, δ = 1 (docs/method.md)


def quantile(confidence: float, pilot_count: int, comparisons: int = 1) -> float:
    """t_{1 - (1 - confidence) / (2 m), n0 - 1}: a two-sided quantile, Bonferroni over m."""
    return t_quantile(1 - (1 - confidence) / (2 * comparisons), pilot_count - 1)


def seeds_planned(pilot_sd: float, pilot_count: int, margin: float,
                  comparisons: int = 1) -> int:
    """Stein's total n for a 95% interval (Bonferroni over ``comparisons``) of half-width at
    most ``margin`` / 2, given the pilot's count and sample sd."""
    if pilot_count < 2:
        raise ValueError(f"a plan needs at least 2 pilot seeds, got {pilot_count}")
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be > 0, got {margin}")
    t = quantile(1 - ALPHA, pilot_count, comparisons)
    needed = (t * pilot_sd / (margin / 2)) ** 2
    return max(pilot_count, math.ceil(needed - 1e-9))  # 1e-9: an exact square stays itself


def interval(differences, pilot_sd: float, pilot_count: int, confidence: float,
             comparisons: int = 1) -> tuple[float, list[float]]:
    """(mean, [lo, hi]): the plan's interval of the mean of all ``differences`` (the pilot's
    and the rest), t_{n0-1} · s0 / √n wide on each side."""
    values = np.asarray(differences, dtype=np.float64)
    mean = float(values.mean())
    half = quantile(confidence, pilot_count, comparisons) * pilot_sd / math.sqrt(len(values))
    return mean, [mean - half, mean + half]


def make(pilot_differences, margin: float, max_seeds: int, seeds_run: int,
         comparisons: int = 1) -> dict:
    """metrics.json's ``plan`` for one paired comparison: the pilot (its seeds are listed by
    the caller), its sd, the target half-width, the seeds planned and run, and whether the
    bound ``max_seeds`` cut the plan short."""
    pilot = np.asarray(pilot_differences, dtype=np.float64)
    sd = float(pilot.std(ddof=1)) if len(pilot) >= 2 else float("nan")
    planned = seeds_planned(sd, len(pilot), margin, comparisons)
    return {"procedure": PROCEDURE, "pilot_sd": sd, "target_half_width": margin / 2,
            "seeds_planned": planned, "seeds_run": seeds_run, "max_seeds": max_seeds,
            "capped": planned > max_seeds, "comparisons": comparisons,
            "adjustment": "bonferroni" if comparisons > 1 else None}


def target(plan: dict) -> int:
    """The seeds the plan trains: those planned, or the bound if that is fewer."""
    return min(plan["seeds_planned"], plan["max_seeds"])


def summary(plan: dict) -> str:
    """One line: "pilot 10 seeds, sd 0.62 → 10 seeds planned, 10 run"."""
    text = (f"pilot {len(plan['pilot_seeds'])} seeds, sd {plan['pilot_sd']:.2f} → "
            f"{plan['seeds_planned']} seeds planned, {plan['seeds_run']} run")
    if plan["capped"]:
        text += f" (capped at {plan['max_seeds']} by --max-seeds)"
    if plan["adjustment"]:
        text += f"; Bonferroni over {plan['comparisons']} comparisons"
    return text


def pilot(parameters: dict) -> dict | None:
    """A run's plan settings (:func:`settings`: the pilot's "seeds", "equivalence_margin",
    "max_seeds") with ``until_decided``, else None."""
    return settings(parameters) if parameters.get("until_decided") else None


def stage_two_seeds(found: dict) -> list[int]:
    """The seeds stage 2 adds to the pilot: the lowest seeds not in it, up to the plan's
    target."""
    missing = target(found) - len(found["pilot_seeds"])
    pilot = set(found["pilot_seeds"])
    return [s for s in range(target(found) + len(pilot)) if s not in pilot][:max(0, missing)]


FIXED = ("seeds", "equivalence_margin", "max_seeds")  # what a plan is made from


def settings(parameters: dict) -> dict:
    """The settings a plan is made from (plan.json's content): the pilot, δ, the bound."""
    return {"seeds": sorted(set(parameters["seeds"])),
            "equivalence_margin": parameters["equivalence_margin"],
            "max_seeds": parameters["max_seeds"]}


def check(parameters: dict, made: dict | None = None) -> None:
    """Refuse, in one line, settings a plan cannot be made from, and any run of a run id whose
    plan is already made (``made``: its plan.json) with other settings or without the plan:
    changing the margin, the pilot or the bound after seeing results voids its error rates."""
    if made is not None:
        wanted = " ".join(f"--{n.replace('_', '-')} {_shown(made[n])}" for n in FIXED)
        if not parameters.get("until_decided") or settings(parameters) != made:
            raise UserInputError(f"this run's plan was made with {wanted}; a plan is fixed "
                                 "once made (changing it after seeing results voids its error "
                                 f"rates): repeat --until-decided {wanted}, or start a new "
                                 "--run-id")
    if not parameters.get("until_decided"):
        return
    pilot_seeds = sorted(set(parameters["seeds"]))
    if len(set(parameters["estimators"])) < 2:
        raise UserInputError("--until-decided compares two estimators: give both, e.g. "
                             "--estimators analytic monte_carlo")
    if len(pilot_seeds) < 2:
        raise UserInputError(f"--until-decided needs at least 2 pilot seeds, got "
                             f"{len(pilot_seeds)}: pass e.g. --seeds 0-{RECOMMENDED_PILOT - 1}")
    if parameters["max_seeds"] < len(pilot_seeds):
        raise UserInputError(f"--max-seeds {parameters['max_seeds']} is fewer than the "
                             f"{len(pilot_seeds)} pilot seeds: raise it or give fewer --seeds")


def _shown(value) -> str:
    return seed_ranges(value) if isinstance(value, list) else f"{value:g}"


def seed_ranges(seeds) -> str:
    """Seeds as the command line takes them, runs of consecutive seeds as ranges:
    [0, 1, 2, 3, 7, 9, 10] -> "0-3 7 9-10"."""
    parts = []
    for seed in sorted(set(seeds)):
        if parts and parts[-1][1] == seed - 1:
            parts[-1][1] = seed
        else:
            parts.append([seed, seed])
    return " ".join(str(a) if a == b else f"{a}-{b}" for a, b in parts)
