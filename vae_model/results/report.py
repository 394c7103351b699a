"""The run's readable and machine-readable results: metrics.json, comparison.csv, report.md,
report.html, and manifest.json, written last, whose ``status: complete`` marks a finished run.

The report answers one question per configuration (every setting but estimator and seed): does
the KL estimator matter? It opens with the verdict and one table, a row per configuration; then
the per-estimator summaries over seeds, each seed's paired difference, every model, the
settings, the data and the figures. Its size grows with the number of configurations and models
by a few table rows each, never by figures (see :mod:`vae_model.results.figures`).
"""

from __future__ import annotations

import datetime as dt
import html
import importlib.metadata
import math
import os
import platform
from pathlib import Path, PurePosixPath

import pandas as pd

from vae_model import UserInputError
from vae_model.evaluation import plan, statistics, verdict
from vae_model.evaluation.decision import DEFAULT_MARGIN
from vae_model.model.config import ModelConfig
from vae_model.results import facets
from vae_model.results.tables import (markdown_table, model_records, plan_sentences,
                                     summary_tables, verdict_sentences)
from vae_model.runs import provenance, registry, storage, store
from vae_model.runs.directory import EVALUATION_FILE, PER_IMAGE_FILE

__all__ = ["collect_metrics", "comparison_table", "summary_tables", "write_report", "caption",
           "figure_order", "mark_latest", "headline_table"]

PACKAGES = ("tensorflow", "tensorflow-probability", "tf-keras", "prefect", "numpy", "pandas",
            "matplotlib")
IMAGE_SEEDS = "the lowest seed of each configuration and estimator (named in each panel)"
CAPTIONS = {
    "curves": "Training curves per configuration: held-out −ELBO (solid, mean over seeds, band: "
              "range over seeds) and train −ELBO (dashed) per epoch.",
    "scores": "Held-out −ELBO, IWAE-K and (2-D latents) reference NLL per configuration: every "
              "seed (hollow) and each estimator's mean with its 95% t-interval over seeds.",
    "differences": "Paired difference between the estimators (same seed), one panel per "
                   "likelihood: every seed, the mean and its 95% t-interval, and the verdict.",
    "gradient-variance": "Gradient variance over draws of z at every model's weights (same "
                         "batch), whole loss and KL term alone, under each estimator (log "
                         "scale; ▼ = zero up to rounding, as for the analytic KL term).",
    "reconstructions": "Reconstructions of the same test images (decoder mean and a sample), "
                       "both estimators side by side per configuration; models: {seeds}.",
    "generations": "Decoder mean and a sample for the same z ~ N(0, I), both estimators per "
                   "configuration; models: {seeds}.",
    "latent": "Posterior means of the test images by class (first two latent dimensions); "
              "models: {seeds}.",
    "manifold": "Decoder mean over a grid of z through the standard-normal inverse CDF (2-D "
                "latents); models: {seeds}.",
}
LIKELIHOOD_NOTE = ("Models with different pixel likelihoods are not comparable by these "
                   "numbers: the continuous Bernoulli is a density on [0, 1] (its −ELBO can be "
                   "negative), the Bernoulli a probability of binary pixels.")
MACHINE_NOTE = ("The numbers depend on the processor as well as on code, data and seeds: on "
                "another instruction set XLA and oneDNN round float32 sums in another order, "
                "and training turns that into other weights, as another seed would. On one "
                "machine a seed reproduces its numbers exactly.")
UNITS = ("Held-out scores on the Fashion-MNIST test images, nats per image (lower is better); "
         "every model is scored with the analytic KL. Per estimator: mean ± std over seeds. "
         "Δ: the paired difference (same seed), with its 95% Student-t interval over seeds.")


def collect_metrics(checkpoint_dirs: list[str], margin: float = DEFAULT_MARGIN,
                    add_seeds=None, pilot: dict | None = None) -> dict:
    """metrics.json's content: per model, its settings, held-out scores and history, and the
    estimator comparison per configuration (:func:`vae_model.evaluation.statistics.compare`,
    with each seed's per-image standard error where per_image.csv exists, and the two-stage
    plan of ``pilot``, if any)."""
    models, per_image = {}, {}
    for directory in map(store.location, checkpoint_dirs):
        state = storage.read_json(directory / "state.json")
        config = ModelConfig.from_dict(state["config"])
        evaluation = storage.read_json(directory / EVALUATION_FILE)
        history = state["history"]
        models[config.name] = {
            "estimator": config.estimator, "seed": config.seed,
            "configuration": config.configuration, "architecture": config.architecture,
            "likelihood": config.likelihood, "latent_size": config.latent_size,
            "epochs": len(history), "heldout": evaluation["heldout"],
            "gradient_variance": evaluation["gradient_variance"], "history": history,
            "train_seconds": state["train_seconds"],
            # the first epoch includes compilation: leave it out where there are others
            "images_per_second": _mean([h["images_per_second"] for h in history[1:]] or
                                       [h["images_per_second"] for h in history]),
            "checkpoint": str(directory),
            "machines": state.get("machines", []),  # the hosts that trained it
        }
        if (directory / PER_IMAGE_FILE).exists():
            with (directory / PER_IMAGE_FILE).open("rb") as table:
                per_image[config.name] = pd.read_csv(table)
    comparison = statistics.compare(models, per_image or None, margin, add_seeds, pilot)
    return {"units": "nats per image", "models": models, "comparison": comparison}


def comparison_table(metrics: dict) -> pd.DataFrame:
    """comparison.csv: a row per model, raw numbers (standard errors over test images)."""
    rows = []
    for name, m in metrics["models"].items():
        heldout = m["heldout"]
        rows.append({
            "model": name, "estimator": m["estimator"], "seed": m.get("seed"),
            "architecture": m["architecture"], "likelihood": m["likelihood"],
            "latent_size": m["latent_size"], "epochs": m["epochs"],
            **{f"heldout_{k}{s}": heldout.get(f"{k}{s}") for k in ("neg_elbo", "kl",
               "reconstruction") for s in ("", "_stderr")},
            "iwae_nll": heldout.get("iwae_nll"), "iwae_nll_stderr": heldout.get("iwae_nll_stderr"),
            "iwae_k": heldout.get("iwae_k"), "reference_nll": heldout.get("reference_nll"),
            "reference_nll_error": heldout.get("reference_nll_error"),
            **{f"grad_var_{e}": v["total_variance"] for e, v in m["gradient_variance"].items()},
            **{f"kl_grad_var_{e}": v["kl_term_variance"]
               for e, v in m["gradient_variance"].items()},
            "train_seconds": m["train_seconds"], "images_per_second": m["images_per_second"],
        })
    return pd.DataFrame(rows)


def headline_table(table: pd.DataFrame) -> pd.DataFrame:
    """comparison.csv's columns a person compares first, rounded (one row per model)."""
    columns = ["model", "seed", "heldout_neg_elbo", "heldout_kl", "heldout_reconstruction",
               "iwae_nll", "iwae_k"] + [c for c in table.columns if c.startswith("grad_var_")]
    return table[[c for c in columns if c in table.columns]].round(2)


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_report(run: Path, checkpoint_dirs: list[str], parameters: dict, data_facts: dict,
                 figure_paths: list[str], timings: dict) -> Path:
    """Write every summary file of the run; manifest.json last. Returns report.md's path."""
    run = store.location(run)
    metrics = collect_metrics(checkpoint_dirs,
                              parameters.get("equivalence_margin", DEFAULT_MARGIN),
                              verdict.add_seeds_command(run.name, parameters),
                              plan.pilot(parameters))
    metrics["run_id"] = run.name
    storage.write_json(run / "metrics.json", metrics)
    storage.write_text(run / "comparison.csv", comparison_table(metrics).to_csv(index=False))
    # a report never names a figure that is not there (deleted since it was drawn)
    figures = sorted((f for f in map(store.location, figure_paths) if f.is_file()),
                     key=figure_order)
    processor = provenance.processor()
    blocks = _blocks(run, metrics, parameters, data_facts, figures, processor)
    storage.write_text(run / "report.md", _markdown(blocks))
    storage.write_text(run / "report.html", _html(run.name, blocks))
    listed = [*figures, "metrics.json", "comparison.csv", "report.md", "report.html",
              *(store.location(d) / name for d in checkpoint_dirs
                for name in ("state.json", EVALUATION_FILE))]
    missing = registry.missing_files(run, listed)
    if missing:
        raise UserInputError(f"run {run.name} is not whole ({len(missing)} file(s) missing, "
                             f"e.g. {missing[0]}): rerun with --run-id {run.name}")
    storage.write_json(run / "manifest.json", {
        "run_id": run.name, "status": "complete",
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": parameters, "packages": package_versions(),
        "platform": platform.platform(), "processor": processor, "data": data_facts,
        "timings": timings,
        "models": {name: m["checkpoint"] for name, m in metrics["models"].items()},
    })
    return run / "report.md"


def mark_latest(artifacts_root: str | os.PathLike, run: Path) -> Path:
    """Point ``<root>/latest`` at this complete run (replaced atomically)."""
    return registry.point_latest(store.location(artifacts_root), run)


def figure_kind(path: Path) -> tuple[int, str, str, int]:
    """(position in CAPTIONS, kind, model, page) for ``<kind>.png``, ``<kind>-page<n>.png`` or
    ``<kind>-<model>.png``; an unknown figure gets (len(CAPTIONS), stem, "", 1)."""
    stem = PurePosixPath(str(path)).stem
    for i, kind in sorted(enumerate(CAPTIONS), key=lambda item: -len(item[1])):
        if stem == kind:
            return i, kind, "", 1
        rest = stem[len(kind) + 1:] if stem.startswith(kind + "-") else None
        if rest is not None:
            if rest.startswith("page") and rest[4:].isdigit():
                return i, kind, "", int(rest[4:])
            return i, kind, rest, 1
    return len(CAPTIONS), stem, "", 1


def figure_order(path: Path) -> tuple:
    """Run-wide figures first (in CAPTIONS order, pages in order), then each model's."""
    index, kind, model, page = figure_kind(path)
    if index == len(CAPTIONS):
        return (2, kind, 0, 0)
    return (1, model, index, page) if model else (0, "", index, page)


def caption(path: Path, seeds: str = IMAGE_SEEDS) -> str:
    """What a figure shows; ``seeds`` says which models the image figures show."""
    index, kind, model, page = figure_kind(path)
    if index == len(CAPTIONS):
        return kind
    text = CAPTIONS[kind].replace("{seeds}", f"model {model}" if model else seeds)
    if model:
        text = text.replace("both estimators side by side per configuration", model) \
                   .replace("both estimators per configuration", model)
    return text + (f" (page {page})" if page > 1 else "")


def _blocks(run: Path, metrics: dict, parameters: dict, data_facts: dict, figures,
            processor: dict) -> list:
    """The report as (kind, content) blocks, rendered to markdown and to HTML alike."""
    records, tables = model_records(metrics), summary_tables(metrics)
    verdict_text = (metrics.get("comparison") or {}).get("verdict", "not computed")
    blocks = [("h1", f"VAE run {run.name}"), ("strong", f"Verdict: {verdict_text}."),
              *[("p", line) for line in plan_sentences(metrics)], ("table", tables[0][1])]
    sentences = verdict_sentences(metrics)
    if len(sentences) > 1:
        blocks.append(("list", sentences))
    blocks.append(("p", UNITS))
    if len({m["likelihood"] for m in metrics["models"].values()}) > 1:
        blocks.append(("p", LIKELIHOOD_NOTE))
    for title, frame in tables[1:]:
        blocks += [("h2", title), ("table", frame)]
    blocks += [("h2", "Settings"), ("list", [f"{k}: {v}" for k, v in parameters.items()]),
               ("h2", "Data"), ("p", f"Read from {data_facts.get('data_dir')}; SHA-256 of the "
                                      "decompressed files:"),
               ("list", [f"{n}: {d}" for n, d in data_facts.get("sha256", {}).items()]),
               ("h2", "Machine"), ("p", f"{provenance.describe(processor)}; "
                                        f"{platform.platform()}. {MACHINE_NOTE}")]
    per_model = provenance.machines_by_model(metrics["models"])
    if per_model:
        blocks += [("p", "The models were trained on more than one machine (the last one "
                         "last where a model was resumed elsewhere):"), ("list", per_model)]
    blocks.append(("h2", "Figures"))
    seeds = facets.representative_seeds_phrase(records) if records else IMAGE_SEEDS
    for path in figures:
        blocks.append(("figure", (store.relative(path, run), caption(path, seeds))))
    return blocks


def _markdown(blocks: list) -> str:
    lines = []
    for kind, content in blocks:
        if kind == "h1":
            lines += [f"# {content}", ""]
        elif kind == "h2":
            lines += [f"## {content}", ""]
        elif kind == "strong":
            lines += [f"**{content}**", ""]
        elif kind == "table":
            lines += [markdown_table(content), ""]
        elif kind == "list":
            lines += [f"- {item}" for item in content] + [""]
        elif kind == "figure":
            path, text = content
            lines += [f"**{text}**", "", f"![{Path(path).stem}]({path})", ""]
        else:
            lines += [content, ""]
    return "\n".join(lines)


def _html(run_id: str, blocks: list) -> str:
    esc = html.escape
    body = []
    for kind, content in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{esc(content)}</{kind}>")
        elif kind == "strong":
            body.append(f"<p class='verdict'><strong>{esc(content)}</strong></p>")
        elif kind == "table":
            body.append(content.to_html(index=False, border=0, classes="table", na_rep="–"))
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{esc(str(i))}</li>" for i in content) + "</ul>")
        elif kind == "figure":
            path, text = content
            body.append(f"<figure><img src='{esc(path)}' alt='{esc(Path(path).stem)}' "
                        f"style='max-width:100%'><figcaption>{esc(text)}</figcaption></figure>")
        else:
            body.append(f"<p>{esc(content)}</p>")
    style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
             "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
             "td:first-child,th:first-child{text-align:left}.verdict{font-size:1.15em}"
             "figure{margin:1.5em 0}figcaption{color:#444}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>VAE run {esc(run_id)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _mean(values):
    return sum(values) / len(values) if values else math.nan

