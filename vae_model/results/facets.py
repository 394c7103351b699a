"""Models grouped by configuration, for figures and the report (no plotting here).

A *configuration* is every setting but the estimator and the seed (``ModelConfig.configuration``):
the models of one configuration differ only in those two, so each configuration is one facet of
every figure and one row of the report's first table. A single-configuration run is the
one-facet case of the same code.
"""

from __future__ import annotations

import zlib

from vae_model.model.config import ARCHITECTURES, LIKELIHOODS, estimator_order  # noqa: F401

ESTIMATOR_LABELS = {"analytic": "analytic KL", "monte_carlo": "Monte-Carlo KL"}
ESTIMATOR_SHORT_NAMES = {"analytic": "analytic", "monte_carlo": "MC"}  # narrow columns
# Okabe-Ito blue and vermilion: distinct for colour-blind readers and in greyscale.
ESTIMATOR_COLOURS = {"analytic": "#0072B2", "monte_carlo": "#D55E00"}
OTHER_COLOURS = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9")
LIKELIHOOD_LABELS = {"bernoulli": "Bernoulli", "continuous_bernoulli": "cont. Bernoulli"}


def estimator_label(estimator: str) -> str:
    return ESTIMATOR_LABELS.get(estimator, estimator)


def estimator_short_name(estimator: str) -> str:
    return ESTIMATOR_SHORT_NAMES.get(estimator, estimator)


def estimator_colour(estimator: str) -> str:
    if estimator in ESTIMATOR_COLOURS:
        return ESTIMATOR_COLOURS[estimator]
    return OTHER_COLOURS[zlib.crc32(estimator.encode()) % len(OTHER_COLOURS)]  # stable per name


def configuration_sort_key(configuration: dict) -> tuple:
    """Hashable and sortable: likelihood first (so facets of one likelihood sit together),
    then architecture and latent size in config order, then any other setting by name."""
    likelihood = configuration.get("likelihood", "")
    architecture = configuration.get("architecture", "")
    rest = tuple(sorted((k, repr(v)) for k, v in configuration.items()
                        if k not in ("likelihood", "architecture", "latent_size")))
    return (_position(likelihood, LIKELIHOODS), _position(architecture, ARCHITECTURES),
            configuration.get("latent_size", 0), rest)


def _position(value, choices) -> tuple:
    return (choices.index(value), "") if value in choices else (len(choices), str(value))


def group(records: dict[str, dict]) -> list[dict]:
    """``records``: model name -> {"estimator", "seed", "configuration", ...}. Returns one group
    per configuration, sorted by :func:`configuration_sort_key`: {"configuration", "title",
    "likelihood", "varying", "models": {estimator: [names by seed]}}. Titles name only the
    settings that vary between the groups (all the main ones when there is a single
    configuration)."""
    groups: dict[tuple, dict] = {}
    for name, record in records.items():
        configuration = record["configuration"]
        entry = groups.setdefault(configuration_sort_key(configuration),
                                  {"configuration": configuration, "models": {}})
        entry["models"].setdefault(record["estimator"], []).append(name)
    ordered = [groups[key] for key in sorted(groups)]
    varying = _varying_settings([g["configuration"] for g in ordered])
    for entry in ordered:
        entry["models"] = {e: sorted(entry["models"][e], key=lambda n: records[n]["seed"])
                           for e in estimator_order(entry["models"])}
        entry["likelihood"] = entry["configuration"].get("likelihood", "")
        entry["varying"] = varying
        entry["title"] = title(entry["configuration"], varying)
    return ordered


def _varying_settings(configurations: list[dict]) -> list[str]:
    keys = list(dict.fromkeys(k for c in configurations for k in c))
    varying = [k for k in keys if len({repr(c.get(k)) for c in configurations}) > 1]
    return varying or [k for k in ("architecture", "likelihood", "latent_size") if k in keys]


def setting_label(key: str, value) -> str:
    """A few characters per setting, e.g. ``conv``, ``cont. Bernoulli``, ``z=8``."""
    if key == "likelihood":
        return LIKELIHOOD_LABELS.get(value, str(value))
    if key == "latent_size":
        return f"z={value}"
    if key == "architecture":
        return str(value)
    if key == "train_limit":
        return "all train images" if value is None else f"{value:,} train images"
    if key == "learning_rate":
        return f"lr {value:g}"
    if key == "batch_size":
        return f"batch {value}"
    if key == "epochs":
        return f"{value} epoch" + ("" if value == 1 else "s")
    return f"{key} {value}"


def title(configuration: dict, keys: list[str] | None = None) -> str:
    keys = keys if keys is not None else ["architecture", "likelihood", "latent_size"]
    return " · ".join(setting_label(k, configuration.get(k)) for k in keys if k in configuration)


def representatives(records: dict[str, dict]) -> dict[str, dict]:
    """The model whose images are drawn for each configuration and estimator: its lowest seed.
    Returns name -> record, in facet order (configuration, then estimator)."""
    chosen = {}
    for entry in group(records):
        for names in entry["models"].values():
            chosen[names[0]] = records[names[0]]
    return chosen


def representative_seeds_phrase(records: dict[str, dict]) -> str:
    """How the report says which seed its per-model figures show, e.g. "seed 0"."""
    seeds = sorted({r["seed"] for r in representatives(records).values()})
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return "the lowest seed of each configuration and estimator (seeds " + ", ".join(
        map(str, seeds)) + ")"
