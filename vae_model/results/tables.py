"""The report's tables as DataFrames of formatted text, with human column names short enough
for a 1,400 px page: the same tables go into report.md, report.html and Prefect artifacts.

Numbers are nats per image (units in the table titles); "–" marks a number that is not there
(not evaluated yet, or not defined, e.g. an interval from one seed).
"""

from __future__ import annotations

import math

import pandas as pd

from vae_model.evaluation import decision, verdict
from vae_model.results import facets



def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def fmt(value, digits: int = 2) -> str:
    """Fixed decimals for scores; 3 significant digits for tiny or huge values."""
    if _missing(value):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if value != 0 and (abs(value) < 0.01 or abs(value) >= 1e6):
        return f"{value:.2e}"
    return f"{value:,.{digits}f}"


def cell(value) -> str:
    """A table cell as one line of text: numbers as :func:`fmt`, "|" escaped for markdown."""
    text = fmt(value) if _missing(value) or isinstance(value, (int, float)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(cell(str(c)) for c in frame.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, "|" + "---|" * len(frame.columns), *rows])


def signed(value, digits: int = 2) -> str:
    """A difference, with its sign always shown."""
    return "–" if _missing(value) else f"{value:+,.{digits}f}"


def plus_minus(value, spread, digits: int = 2) -> str:
    """``value ± spread``, both to the decimal of the spread's second significant digit (at
    least ``digits`` decimals): 6.3731 ± 0.0076, not 6.37 ± 7.59e-03 beside 6.43 ± 0.01."""
    if _missing(value):
        return "–"
    if _missing(spread):
        return fmt(value, digits)
    if spread <= 0 or abs(value) >= 1e6:
        return f"{fmt(value, digits)} ± {fmt(spread, digits)}"
    if spread < 1e-6:
        return f"{fmt(value, digits)} ± {spread:.1e}"
    decimals = max(digits, 1 - math.floor(math.log10(spread)))
    return f"{value:,.{decimals}f} ± {spread:,.{decimals}f}"


def _summary_cell(summary: dict | None) -> str:
    return "–" if not summary else plus_minus(summary.get("mean"), summary.get("std"))


def model_records(metrics: dict) -> dict:
    """metrics.json's models with "seed" and "configuration" (derived for runs written before
    they were stored)."""
    records = {}
    for name, m in metrics["models"].items():
        configuration = m.get("configuration") or {k: m[k] for k in (
            "architecture", "likelihood", "latent_size") if k in m}
        records[name] = {**m, "seed": m.get("seed", 0), "configuration": configuration}
    return records


def _blocks_by_group(metrics: dict) -> list[tuple[dict, dict]]:
    """(facet group, statistics block) per configuration, in the figures' facet order."""
    comparison = metrics.get("comparison") or {}
    blocks = {facets.configuration_sort_key(b["configuration"]): b
              for b in comparison.get("configurations", [])}
    return [(g, blocks.get(facets.configuration_sort_key(g["configuration"]), {}))
            for g in facets.group(model_records(metrics))]


def _first_pair(block: dict) -> dict | None:
    return (block.get("paired") or [None])[0]


def short_verdict(pair: dict | None) -> str:
    return verdict.outcome(pair, facets.estimator_label)


def _difference_cell(pair: dict | None) -> str:
    if not pair or _missing(pair.get("mean_difference")):
        return "–"
    text = signed(pair["mean_difference"])
    ci95 = verdict.deciding(pair)[0]  # with a plan over several configurations: adjusted
    if ci95:
        text += f" ({signed(ci95[0])} to {signed(ci95[1])})"
    return text


def _count(n: int) -> str:
    return str(n) if n < decision.MAX_SEEDS else f"> {decision.MAX_SEEDS}"


def _seeds_needed_cell(pair: dict | None) -> str:
    """Seeds to detect a margin-sized difference / for equivalence; the latter assumes a true
    difference of 0, so it is '–' when the mean already lies outside the margin."""
    needed = (pair or {}).get("seeds_needed")
    if not needed:
        return "–"
    applies = decision.equivalence_count_applies(pair)
    return f"{_count(needed['detect'])} / {_count(needed['equivalence']) if applies else '–'}"


def _estimators(metrics: dict) -> list[str]:
    return facets.estimator_order(m["estimator"] for m in metrics["models"].values())


def _pair_label(metrics: dict) -> str:
    names = [facets.estimator_short_name(e) for e in _estimators(metrics)[:2]]
    return " − ".join(names) if len(names) == 2 else "difference"


def verdict_table(metrics: dict) -> pd.DataFrame:
    """A row per configuration: each estimator's held-out −ELBO (mean ± std over seeds), the
    paired difference with its 95% interval, the number of paired seeds and the verdict."""
    rows = []
    for group, block in _blocks_by_group(metrics):
        row = {"Configuration": group["title"]}
        for estimator in _estimators(metrics):
            entry = (block.get("by_estimator") or {}).get(estimator) or {}
            row[f"{facets.estimator_label(estimator)} −ELBO"] = _summary_cell(entry.get("neg_elbo"))
        pair = _first_pair(block)
        row[f"Δ {_pair_label(metrics)} (95% CI)"] = _difference_cell(pair)
        ci90 = verdict.deciding(pair)[1] if pair else None
        row["90% CI"] = "–" if not ci90 else f"{signed(ci90[0])} to {signed(ci90[1])}"
        row["Seeds"] = len(pair["seeds"]) if pair else 0
        row["Verdict"] = short_verdict(pair)
        row["Seeds to detect / equiv."] = _seeds_needed_cell(pair)
        rows.append(row)
    return pd.DataFrame(rows)


def plan_sentences(metrics: dict) -> list[str]:
    """The two-stage plan behind each planned comparison, one line each (none without a
    plan): "Plan (Stein's two-stage): pilot 10 seeds, sd 0.62 → 10 seeds planned, 10 run"."""
    blocks = (metrics.get("comparison") or {}).get("configurations", [])
    return [f"Plan (Stein's two-stage): {line}" for line in verdict.plan_lines(
        blocks, lambda block: facets.title(block["configuration"]))]


def verdict_sentences(metrics: dict) -> list[str]:
    """Each configuration's one-sentence verdict, prefixed by its name."""
    return [f"{group['title']}: {block['verdict']}" for group, block in _blocks_by_group(metrics)
            if block.get("verdict")]


def _iwae_label(metrics: dict) -> str:
    k = next((m["heldout"].get("iwae_k") for m in metrics["models"].values()), None)
    return f"IWAE-{k}" if k else "IWAE-K"


def _has_reference(metrics: dict) -> bool:
    return any(m["heldout"].get("reference_nll") is not None for m in metrics["models"].values())


def per_estimator_table(metrics: dict) -> pd.DataFrame:
    scores = [("neg_elbo", "−ELBO"), ("kl", "KL"), ("reconstruction", "Reconstruction"),
              ("iwae_nll", _iwae_label(metrics))]
    if _has_reference(metrics):
        scores += [("reference_nll", "Reference NLL"), ("inference_gap", "Inference gap"),
                   ("iwae_gap", "IWAE gap")]
    rows = []
    for group, block in _blocks_by_group(metrics):
        for estimator, entry in (block.get("by_estimator") or {}).items():
            rows.append({"Configuration": group["title"],
                         "Estimator": facets.estimator_label(estimator),
                         "Seeds": len(entry.get("seeds", [])),
                         **{label: _summary_cell(entry.get(key)) for key, label in scores}})
    return pd.DataFrame(rows)


def per_seed_table(metrics: dict) -> pd.DataFrame:
    rows = []
    for group, block in _blocks_by_group(metrics):
        for pair in block.get("paired") or []:
            a, b = (facets.estimator_short_name(e) for e in pair["estimators"])
            for seed in pair.get("per_seed", []):
                rows.append({"Configuration": group["title"], "Pair": f"{a} − {b}",
                             "Seed": seed["seed"], "Δ −ELBO": signed(seed.get("difference")),
                             "Std. error (test images)": fmt(seed.get("per_image_stderr"))})
    return pd.DataFrame(rows)


def per_model_table(metrics: dict) -> pd.DataFrame:
    iwae = _iwae_label(metrics)
    rows = []
    for name in _model_order(metrics):
        m = metrics["models"][name]
        h = m["heldout"]
        row = {"Model": name,
               "−ELBO": plus_minus(h.get("neg_elbo"), h.get("neg_elbo_stderr")),
               "KL": plus_minus(h.get("kl"), h.get("kl_stderr")),
               "Reconstruction": plus_minus(h.get("reconstruction"),
                                            h.get("reconstruction_stderr")),
               iwae: plus_minus(h.get("iwae_nll"), h.get("iwae_nll_stderr"))}
        if _has_reference(metrics):  # -ELBO = reference NLL + inference gap
            reference = h.get("reference_nll")
            row["Reference NLL"] = plus_minus(reference, h.get("reference_nll_error"))
            row["Inference gap"] = fmt(None if reference is None else h["neg_elbo"] - reference)
            row["IWAE gap"] = fmt(None if reference is None or h.get("iwae_nll") is None
                                  else h["iwae_nll"] - reference)
        for estimator, variance in (m.get("gradient_variance") or {}).items():
            row[f"Grad. var. {facets.estimator_short_name(estimator)}"] = _significant(
                variance.get("total_variance"))
        row["Train (s)"] = fmt(m.get("train_seconds"), 1)
        row["Images/s"] = "–" if _missing(m.get("images_per_second")) else \
            f"{m['images_per_second']:,.0f}"
        rows.append(row)
    return pd.DataFrame(rows)


def _model_order(metrics: dict) -> list[str]:
    """Configuration (facet order), then estimator, then seed, as in the other tables."""
    return [name for group in facets.group(model_records(metrics))
            for names in group["models"].values() for name in names]


def _significant(value) -> str:
    return "–" if _missing(value) else f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def summary_tables(metrics: dict) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) in report order; the first is the verdict table, a row per
    configuration. Cells are text, "–" where a number is missing."""
    return [
        ("Estimator comparison per configuration: held-out −ELBO, nats per image",
         verdict_table(metrics)),
        ("Per estimator: mean ± std over seeds, nats per image", per_estimator_table(metrics)),
        ("Per seed: paired difference of held-out −ELBO (nats per image) and its standard "
         "error over the test images", per_seed_table(metrics)),
        ("Per model: nats per image ± standard error over the test images" + (
            " (reference NLL ± its numerical error; −ELBO = reference NLL + inference gap, "
            "IWAE gap = IWAE-K − reference NLL)" if _has_reference(metrics) else "") +
         "; Grad. var.: of the whole loss under each estimator, at the model's weights",
         per_model_table(metrics)),
    ]
