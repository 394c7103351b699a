"""The run's readable and machine-readable results: metrics.json, comparison.csv, report.md,
report.html, and manifest.json, written last, whose ``status: complete`` marks a finished run."""

from __future__ import annotations

import datetime as dt
import html
import importlib.metadata
import os
import platform
from pathlib import Path

import pandas as pd

from vae_model import storage
from vae_model.config import ModelConfig
from vae_model.run import EVALUATION_FILE

PACKAGES = ("tensorflow", "tensorflow-probability", "tf-keras", "prefect", "numpy", "pandas",
            "matplotlib")
CAPTIONS = {
    "comparison": "The seed's comparison: analytic vs Monte-Carlo KL, same test images and z.",
    "scores": "Held-out -ELBO and IWAE bound per model (nats per test image, lower is better).",
    "curves": "Train (dashed) and held-out (solid) -ELBO per epoch; held-out KL and "
              "reconstruction terms.",
    "gradient-variance": "Gradient variance of each KL estimator at each model's trained "
                         "weights (same batch, repeated draws of z): whole loss, and KL term "
                         "alone (zero for the analytic KL).",
    "reconstructions": "Test images, a decoder sample and the decoder mean of their "
                       "reconstructions.",
    "generations": "Decoder sample and mean for z drawn from the prior (same z for every model).",
    "manifold": "Decoder mean over a grid of z through the standard-normal inverse CDF.",
    "latent": "Posterior means of the 10,000 test images, coloured by class.",
}


def collect_metrics(checkpoint_dirs: list[str]) -> dict:
    """metrics.json's content: per model, its settings, held-out scores and history."""
    models = {}
    for directory in map(Path, checkpoint_dirs):
        state = storage.read_json(directory / "state.json")
        config = ModelConfig.from_dict(state["config"])
        evaluation = storage.read_json(directory / EVALUATION_FILE)
        history = state["history"]
        models[config.name] = {
            "estimator": config.estimator, "architecture": config.architecture,
            "likelihood": config.likelihood, "latent_size": config.latent_size,
            "epochs": len(history), "heldout": evaluation["heldout"],
            "gradient_variance": evaluation["gradient_variance"], "history": history,
            "train_seconds": state["train_seconds"],
            # the first epoch includes compilation: leave it out where there are others
            "images_per_second": _mean([h["images_per_second"] for h in history[1:]] or
                                       [h["images_per_second"] for h in history]),
            "checkpoint": str(directory),
        }
    return {"units": "nats per image", "models": models}


def comparison_table(metrics: dict) -> pd.DataFrame:
    rows = []
    for name, m in metrics["models"].items():
        rows.append({
            "model": name, "estimator": m["estimator"], "architecture": m["architecture"],
            "likelihood": m["likelihood"], "latent_size": m["latent_size"], "epochs": m["epochs"],
            "heldout_neg_elbo": m["heldout"]["neg_elbo"], "heldout_kl": m["heldout"]["kl"],
            "heldout_reconstruction": m["heldout"]["reconstruction"],
            "iwae_nll": m["heldout"]["iwae_nll"], "iwae_k": m["heldout"]["iwae_k"],
            **{f"grad_var_{e}": v["total_variance"] for e, v in m["gradient_variance"].items()},
            **{f"kl_grad_var_{e}": v["kl_term_variance"]
               for e, v in m["gradient_variance"].items()},
            "train_seconds": m["train_seconds"], "images_per_second": m["images_per_second"],
        })
    return pd.DataFrame(rows)


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
    run = Path(run)
    metrics = collect_metrics(checkpoint_dirs)
    metrics["run_id"] = run.name
    table = comparison_table(metrics)
    storage.write_json(run / "metrics.json", metrics)
    storage.write_text(run / "comparison.csv", table.to_csv(index=False))
    figures = sorted(map(Path, figure_paths), key=_figure_order)
    storage.write_text(run / "report.md", _markdown(run.name, parameters, data_facts, table,
                                                    figures, run))
    storage.write_text(run / "report.html", _html(run.name, parameters, data_facts, table,
                                                  figures, run))
    storage.write_json(run / "manifest.json", {
        "run_id": run.name, "status": "complete",
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": parameters, "packages": package_versions(),
        "platform": platform.platform(), "data": data_facts, "timings": timings,
        "models": {name: m["checkpoint"] for name, m in metrics["models"].items()},
    })
    return run / "report.md"


def mark_latest(artifacts_root: str | os.PathLike, run: Path) -> Path:
    """Point ``<root>/latest`` at this complete run (replaced atomically)."""
    link = Path(artifacts_root).expanduser().resolve() / "latest"
    tmp = link.with_name(f".latest.{os.getpid()}")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(Path(run).resolve().relative_to(link.parent))
    os.replace(tmp, link)
    return link


def headline_table(table: pd.DataFrame) -> pd.DataFrame:
    """The columns a person compares first, rounded."""
    columns = ["model", "heldout_neg_elbo", "heldout_kl", "heldout_reconstruction", "iwae_nll",
               "iwae_k"] + [c for c in table.columns if c.startswith("grad_var_")] + [
                   "train_seconds", "images_per_second"]
    return table[columns].round(2)


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *rows])


def _cell(value) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def _figure_kind(path: Path) -> tuple[int, str, str]:
    """(position in CAPTIONS, kind, model) for ``<kind>.png`` or ``<kind>-<model>.png``;
    an unknown figure gets (len(CAPTIONS), stem, "")."""
    for i, kind in enumerate(CAPTIONS):
        if path.stem == kind or path.stem.startswith(kind + "-"):
            return i, kind, path.stem[len(kind) + 1:]
    return len(CAPTIONS), path.stem, ""


def _figure_order(path: Path) -> tuple:
    """Run-wide comparisons first (in CAPTIONS order), then each model's figures."""
    index, kind, model = _figure_kind(path)
    if index == len(CAPTIONS):
        return (2, kind, 0)
    return (1, model, index) if model else (0, index, "")


def caption(path: Path) -> str:
    index, kind, model = _figure_kind(path)
    if index == len(CAPTIONS):
        return kind
    return f"{model}: {CAPTIONS[kind]}" if model else CAPTIONS[kind]


LIKELIHOOD_NOTE = ("Models with different pixel likelihoods are not comparable by these "
                   "numbers: the continuous Bernoulli is a density on [0, 1] (its -ELBO can be "
                   "negative), the Bernoulli a probability of binary pixels.")


def _notes(table: pd.DataFrame) -> list[str]:
    return [LIKELIHOOD_NOTE] if table["likelihood"].nunique() > 1 else []


def _markdown(run_id, parameters, data_facts, table, figures, run) -> str:
    lines = [f"# VAE run `{run_id}`", "",
             "Held-out scores on the 10,000 Fashion-MNIST test images, in nats per image "
             "(lower is better); every model is scored with the analytic KL.", "",
             markdown_table(headline_table(table)), "", *_notes(table), "", "## Configuration",
             ""]
    lines += [f"- `{k}`: `{v}`" for k, v in parameters.items()]
    lines += ["", "## Data", "", f"Read from `{data_facts.get('data_dir')}`; SHA-256 of the "
              "decompressed files:", ""]
    lines += [f"- `{name}`: `{digest}`" for name, digest in data_facts.get("sha256", {}).items()]
    lines += ["", "## Figures", ""]
    for path in figures:
        rel = path.relative_to(run)
        lines += [f"**{caption(path)}**", "", f"![{path.stem}]({rel.as_posix()})", ""]
    return "\n".join(lines)


def _html(run_id, parameters, data_facts, table, figures, run) -> str:
    esc = html.escape
    body = [f"<h1>VAE run <code>{esc(run_id)}</code></h1>",
            "<p>Held-out scores in nats per image (lower is better).</p>",
            headline_table(table).to_html(index=False, border=0, classes="table"),
            *[f"<p>{esc(note)}</p>" for note in _notes(table)],
            "<h2>Configuration</h2><ul>"]
    body += [f"<li><code>{esc(k)}</code>: <code>{esc(str(v))}</code></li>"
             for k, v in parameters.items()]
    body += ["</ul><h2>Data</h2><ul>"]
    body += [f"<li><code>{esc(n)}</code>: <code>{esc(d)}</code></li>"
             for n, d in data_facts.get("sha256", {}).items()]
    body += ["</ul><h2>Figures</h2>"]
    for path in figures:
        rel = path.relative_to(run).as_posix()
        body += [f"<figure><img src='{esc(rel)}' alt='{esc(path.stem)}' style='max-width:100%'>"
                 f"<figcaption>{esc(caption(path))}</figcaption></figure>"]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse;font-size:13px}"
             "td,th{padding:3px 8px;border-bottom:1px solid #ddd}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>VAE run {esc(run_id)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _mean(values):
    return sum(values) / len(values) if values else float("nan")
