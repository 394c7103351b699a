"""Uncertainty of held-out scores, and a verdict that says only what the data supports.

Each (estimator, seed) is one trained model scored on the same test images, so two estimators
are compared *paired by seed*: the difference of their held-out -ELBO per seed, with a Student-t
interval over seeds (the seed-to-seed variation is what a claim about the estimators must
beat). Within one seed, the per-image differences give a standard error for the test-set noise
only. All numbers are nats per image; lower -ELBO is better. Outputs are JSON-able: plain
floats, ints and lists, None for a statistic that needs more values. A non-finite score (a
diverged model) cannot be compared: it is refused in one line naming the model.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from vae_model import UserInputError
from vae_model.evaluation import decision, plan, verdict
from vae_model.model.config import estimator_order

HELDOUT_METRICS = ("neg_elbo", "kl", "reconstruction", "iwae_nll")


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _values(values) -> np.ndarray:
    return np.asarray(list(values), dtype=np.float64).reshape(-1)


def summarize(values) -> dict:
    """{"mean", "std" (ddof=1), "n"}; mean None for no values, std None for fewer than 2."""
    array = _values(values)
    n = len(array)
    return {"mean": _number(array.mean()) if n else None,
            "std": _number(array.std(ddof=1)) if n >= 2 else None, "n": n}


def t_interval(values, confidence: float = 0.95) -> tuple[float | None, list[float] | None]:
    """(mean, [lo, hi]): the Student-t interval for the mean of the n values (n - 1 degrees of
    freedom); the interval is None for fewer than 2 values."""
    array = _values(values)
    n = len(array)
    if n < 2:
        return (_number(array[0]) if n else None), None
    mean = float(array.mean())
    half_width = decision.t_quantile(0.5 + confidence / 2, n - 1) * array.std(ddof=1) / math.sqrt(n)
    return _number(mean), [_number(mean - half_width), _number(mean + half_width)]


def paired_per_image(a, b) -> dict:
    """Two models' per-image values on the same test images: the mean of a - b and the standard
    error of that mean (sd of the per-image differences / sqrt(n)). It measures how much the
    difference would move with another draw of test images, not with another training seed."""
    a, b = _values(a), _values(b)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same images: {len(a)} vs {len(b)} values")
    differences = a - b
    n = len(differences)
    return {"mean_difference": _number(differences.mean()) if n else None,
            "stderr": _number(differences.std(ddof=1) / math.sqrt(n)) if n >= 2 else None,
            "n": n}


def _aligned_per_image(frame_a, frame_b, column: str) -> tuple[np.ndarray, np.ndarray]:
    """The two frames' ``column`` on the test images both scored, matched by ``index``."""
    index_a, index_b = frame_a["index"].to_numpy(), frame_b["index"].to_numpy()
    _, rows_a, rows_b = np.intersect1d(index_a, index_b, assume_unique=True,
                                       return_indices=True)
    return frame_a[column].to_numpy()[rows_a], frame_b[column].to_numpy()[rows_b]


def _has_reference(heldout: dict) -> bool:
    return heldout.get("reference_nll") is not None


def _by_estimator(models: dict) -> dict:
    """Per estimator: its seeds and models (by seed) and summaries over seeds of each score."""
    result = {}
    for estimator in estimator_order([m["estimator"] for m in models.values()]):
        names = sorted((n for n, m in models.items() if m["estimator"] == estimator),
                       key=lambda n: models[n]["seed"])
        heldouts = [models[n]["heldout"] for n in names]
        entry = {"seeds": [int(models[n]["seed"]) for n in names], "models": names}
        for metric in HELDOUT_METRICS:
            entry[metric] = summarize(h[metric] for h in heldouts)
        if all(_has_reference(h) for h in heldouts):
            entry["reference_nll"] = summarize(h["reference_nll"] for h in heldouts)
            entry["inference_gap"] = summarize(h["neg_elbo"] - h["reference_nll"]
                                               for h in heldouts)
            entry["iwae_gap"] = summarize(h["iwae_nll"] - h["reference_nll"] for h in heldouts)
        result[estimator] = entry
    return result


def _model_by_seed(models: dict, estimator: str) -> dict:
    by_seed = {}
    for name, model in models.items():
        if model["estimator"] == estimator:
            if model["seed"] in by_seed:
                raise ValueError(f"two {estimator} models with seed {model['seed']} in one "
                                 f"configuration: {by_seed[model['seed']]} and {name}")
            by_seed[model["seed"]] = name
    return by_seed


def finite_score(name: str, metric: str, value) -> float:
    """``value``, or one line naming the model if it is not a finite number."""
    if value is None or not math.isfinite(float(value)):
        raise UserInputError(
            f"{name}'s held-out {metric} is {value}: a diverged model cannot be compared; "
            f"retrain it (delete its models/{name} directory and rerun with the same --run-id)")
    return float(value)


def quantity(differences: list[float], margin: float, pilot: list[bool] | None = None,
              comparisons: int = 1) -> dict:
    """A paired quantity's mean difference, intervals (95% and 90%), sd and decision; with a
    ``pilot`` (which differences are the pilot's), the plan's intervals (:mod:`.plan`), and the
    decision at α / ``comparisons``."""
    sd = summarize(differences)["std"]
    if pilot is None:
        mean, ci95 = t_interval(differences)
        ci90 = t_interval(differences, confidence=0.90)[1]
        return {"mean_difference": mean, "ci95": ci95, "std": sd,
                **decision.decide(mean, ci95, ci90, sd, margin)}
    pilot_values = [d for d, p in zip(differences, pilot) if p]
    pilot_sd, n0 = float(np.std(pilot_values, ddof=1)), len(pilot_values)
    mean, ci95 = plan.interval(differences, pilot_sd, n0, 0.95)
    ci90 = plan.interval(differences, pilot_sd, n0, 0.90)[1]
    if comparisons == 1:
        return {"mean_difference": mean, "ci95": ci95, "std": sd,
                **decision.decide(mean, ci95, ci90, sd, margin)}
    deciding = {"ci95": plan.interval(differences, pilot_sd, n0, 0.95, comparisons)[1],
                "ci90": plan.interval(differences, pilot_sd, n0, 0.90, comparisons)[1],
                "comparisons": comparisons}  # the intervals the decision is taken from
    return {"mean_difference": mean, "ci95": ci95, "std": sd, "deciding": deciding,
            **decision.decide(mean, ci95, ci90, sd, margin,
                              (deciding["ci95"], deciding["ci90"]))}


def _paired(models: dict, a: str, b: str, per_image: dict | None, margin: float,
            design: dict | None = None) -> dict:
    """Estimator a minus estimator b, seed by seed, on the seeds both have; with a ``design``
    ({"pilot_seeds", "max_seeds", "comparisons"}), as the plan made from its pilot seeds."""
    names_a, names_b = _model_by_seed(models, a), _model_by_seed(models, b)
    seeds = sorted(set(names_a) & set(names_b))
    pilot = comparisons = None
    if design is not None:
        pilot, comparisons = [s in design["pilot_seeds"] for s in seeds], design["comparisons"]
        if sum(pilot) < 2:
            raise UserInputError(f"a plan needs at least 2 pilot seeds trained with both {a} "
                                 f"and {b} KL, found {sum(pilot)}")

    def differences(metric):
        return [finite_score(names_a[s], metric, models[names_a[s]]["heldout"][metric])
                - finite_score(names_b[s], metric, models[names_b[s]]["heldout"][metric])
                for s in seeds]

    def scored(metric):
        return quantity(differences(metric), margin, pilot, comparisons or 1)

    neg_elbo = differences("neg_elbo")
    per_seed = []
    for seed, difference in zip(seeds, neg_elbo):
        stderr = None
        if per_image is not None and names_a[seed] in per_image and names_b[seed] in per_image:
            stderr = paired_per_image(*_aligned_per_image(
                per_image[names_a[seed]], per_image[names_b[seed]], "neg_elbo"))["stderr"]
        per_seed.append({"seed": int(seed), "difference": _number(difference),
                         "per_image_stderr": stderr})
    pair = {"estimators": [a, b], "metric": "neg_elbo", "seeds": [int(s) for s in seeds],
            "differences": [_number(d) for d in neg_elbo], **scored("neg_elbo"),
            "iwae_nll": scored("iwae_nll"), "per_seed": per_seed, "plan": None}
    if seeds and all(_has_reference(models[names[s]]["heldout"])
                     for names in (names_a, names_b) for s in seeds):
        pair["reference_nll"] = scored("reference_nll")
    pair["better"] = decision.winner(pair["estimators"],
                                     pair["ci95"] if pair["decision"] == "better" else None)
    if design is not None:
        pair["plan"] = {**plan.make([d for d, p in zip(neg_elbo, pilot) if p], margin,
                                    design["max_seeds"], len(seeds), comparisons),
                        "pilot_seeds": [s for s, p in zip(seeds, pilot) if p]}
    return pair


def compare(models: dict, per_image: dict | None = None,
            margin: float = decision.DEFAULT_MARGIN, add_seeds=None,
            pilot: dict | None = None) -> dict:
    """Group models by configuration and compare the estimators within each.

    ``models``: name -> {"estimator", "seed", "configuration": {setting: value}, "heldout":
    {"neg_elbo", "kl", "reconstruction", "iwae_nll", "iwae_k"[, "reference_nll",
    "reference_nll_error"]}}. ``per_image``: name -> DataFrame with columns ``index,
    neg_elbo, iwae_nll[, reference_nll]`` (optional; gives each seed's per-image standard error).

    Returns {"configurations": [block, ...] in first-seen order, "verdict": ...} where a block is
    {"configuration", "by_estimator", "paired", "verdict"}. For convenience with a single
    configuration, the top level also carries the *first* configuration's "configuration",
    "by_estimator" and "paired"; the top-level "verdict" is that block's verdict when there is
    one configuration, else a count of outcomes across configurations. Each paired entry is
    estimator a minus b (analytic minus monte_carlo when both exist) and also says which
    estimator is "better" (95% interval over seeds excludes 0) or None, and carries each
    quantity's decision for the equivalence ``margin`` (:func:`decision.decide`).
    ``add_seeds(seeds)``: the command that adds ``seeds`` to this run, for the verdict's
    advice (optional). ``pilot``: {"seeds", "max_seeds"} of a two-stage plan (``--until-decided``),
    or None: every pair then carries its ``plan`` (:func:`plan.make`), its intervals are the
    plan's, and its decision is taken at α / (the number of pairs in all configurations).
    """
    decision.check_margin(margin)
    groups: list[tuple[dict, dict]] = []
    for name, model in models.items():
        for configuration, members in groups:
            if configuration == model["configuration"]:
                members[name] = model
                break
        else:
            groups.append((model["configuration"], {name: model}))
    estimators = [_by_estimator(members) for _, members in groups]
    design = None if pilot is None else {
        "pilot_seeds": set(pilot["seeds"]), "max_seeds": pilot["max_seeds"],
        "comparisons": max(1, sum(math.comb(len(e), 2) for e in estimators))}
    blocks = []
    for (configuration, members), by_estimator in zip(groups, estimators):
        paired = [_paired(members, a, b, per_image, margin, design)
                  for a, b in itertools.combinations(list(by_estimator), 2)]
        blocks.append({"configuration": dict(configuration), "by_estimator": by_estimator,
                       "paired": paired,
                       "verdict": verdict.verdict(by_estimator, paired, add_seeds)})
    first = blocks[0] if blocks else {"configuration": None, "by_estimator": {}, "paired": [],
                                      "verdict": "no models: nothing to compare"}
    return {"configurations": blocks, "configuration": first["configuration"],
            "by_estimator": first["by_estimator"], "paired": first["paired"],
            "verdict": first["verdict"] if len(blocks) <= 1 else verdict.summary_verdict(blocks)}
