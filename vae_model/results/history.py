"""Runs of one configuration as a series: the headline numbers of the last complete runs, a
trend figure, a flag on any run that moved beyond the seed noise, and ``artifacts/index.html``
linking every run's report.

Scheduled runs use fixed seeds (0 1 2 by default), so two runs of one configuration train the
same models on the same data: their headline numbers differ only if the code, the packages or
the machine changed something. A run whose per-estimator mean (held-out -ELBO or IWAE) moves
from the previous complete run of its configuration by more than
``max(1 nat, 2 x the larger of the two runs' std over seeds)`` is flagged (upwards: a
regression, since lower is better). Built on :func:`vae_model.runs.registry.list_runs`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import io
import json
import math
import os
import re
from pathlib import Path

import pandas as pd

from vae_model.results import facets, tables
from vae_model.runs import provenance, registry, storage, store
from vae_model.runs.provenance import code_version

# parameters that say where a run reads and writes, or how much it draws: not what it computes
NOT_CONFIGURATION = ("run_id", "artifacts_dir", "data_dir", "all_model_figures")
PROVENANCE_FILE = "provenance.json"
MIN_CHANGE = 1.0  # nats per image
SEED_STDS = 2.0
METRICS = {"neg_elbo": "held-out −ELBO", "iwae_nll": "IWAE"}
SHORT_PACKAGES = {"tensorflow": "TF", "tensorflow-probability": "TFP", "prefect": "Prefect"}


def configuration_hash(parameters: dict) -> str:
    """A short hash of the parameters that determine a run's numbers."""
    kept = {k: v for k, v in sorted(parameters.items()) if k not in NOT_CONFIGURATION}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:10]


def record_provenance(run: str | os.PathLike, parameters: dict) -> dict:
    """Write ``<run>/provenance.json`` (configuration key, code version) once per publish. The
    code is that which trained and evaluated the run's models (their state.json and
    evaluation.json), so that rerunning only the report with newer code does not credit it
    with the numbers; this process's code where they do not say."""
    value = {"configuration": configuration_hash(parameters), "code": numbers_code(run)}
    storage.write_json(store.location(run) / PROVENANCE_FILE, value)
    return value


def numbers_code(run: str | os.PathLike) -> str:
    """One code version if every model was trained and evaluated by it, else "trained A;
    evaluated B" (each a sorted list)."""
    models = store.location(run) / "models"
    trained = {_read(p).get("code") for p in models.glob("*/state.json")} - {None}
    evaluated = {_read(p).get("code") for p in models.glob("*/evaluation.json")} - {None}
    codes = trained | evaluated
    if len(codes) <= 1:
        return codes.pop() if codes else code_version()
    return "; ".join(f"{stage} {', '.join(sorted(codes))}" for stage, codes in
                     (("trained", trained), ("evaluated", evaluated)) if codes)


def _read(path: Path) -> dict:
    try:
        return storage.read_json(path) or {}
    except (OSError, ValueError):
        return {}


def runs(artifacts_root: str | os.PathLike, complete: str | None = None) -> list[dict]:
    """:func:`registry.list_runs` (oldest first), each with ``configuration``, ``code``,
    ``packages`` and ``iwae_k`` added. ``complete`` names a run to count as complete whatever
    its lock says (the run publishing itself: its manifest is written, its flow still runs)."""
    entries = []
    for entry in registry.list_runs(artifacts_root):
        path = store.location(entry["path"])
        manifest = _read(path / "manifest.json")
        provenance = _read(path / PROVENANCE_FILE)
        parameters = manifest.get("parameters") or {}
        if entry["id"] == complete and manifest.get("status") == "complete":
            entry["status"] = "complete"
        entry.update(configuration=provenance.get("configuration") or (
            configuration_hash(parameters) if parameters else None),
            code=provenance.get("code") or manifest.get("code_version"),
            packages=manifest.get("packages") or {}, processor=manifest.get("processor"),
            iwae_k=parameters.get("iwae_k"),
            verdict=tables.short_verdict(entry["pair"]))
        entries.append(entry)
    return entries


def series(entries: list[dict], configuration: str, last: int = 20) -> list[dict]:
    """The last ``last`` complete runs of ``configuration``, oldest first, each with
    ``changes``: per estimator and metric, the move from the previous run of the series and
    whether it is beyond the seed noise (see the module's docstring)."""
    chosen = [e for e in entries
              if e["status"] == "complete" and e["configuration"] == configuration]
    for previous, entry in zip([None] + chosen, chosen):
        entry["changes"] = compare(previous["headline"], entry["headline"]) if previous else {}
    return chosen[-last:]


def _number(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def compare(before: dict, after: dict) -> dict:
    """{estimator: {metric: {"delta", "tolerance", "flag"}}}, flag "regression" (up),
    "improvement" (down) or None (within max(1 nat, 2 std))."""
    changes = {}
    for estimator, scores in after.items():
        for metric in METRICS:
            new = (scores.get(metric) or {})
            old = ((before.get(estimator) or {}).get(metric) or {})
            if _number(new.get("mean")) is None or _number(old.get("mean")) is None:
                continue
            delta = new["mean"] - old["mean"]
            spread = max(_number(new.get("std")) or 0.0, _number(old.get("std")) or 0.0)
            tolerance = max(MIN_CHANGE, SEED_STDS * spread)
            flag = None if abs(delta) <= tolerance else (
                "regression" if delta > 0 else "improvement")
            changes.setdefault(estimator, {})[metric] = {
                "delta": delta, "tolerance": tolerance, "flag": flag}
    return changes


def _mean_std(score: dict | None) -> str:
    score = score or {}
    mean, std = _number(score.get("mean")), _number(score.get("std"))
    if mean is None:
        return "–"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def _date(stamp: str | None) -> str:
    try:
        parsed = dt.datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return "–"
    if parsed.tzinfo:
        parsed = parsed.astimezone(dt.timezone.utc)
    return f"{parsed:%Y-%m-%d %H:%M}"


def _packages(packages: dict) -> str:
    return ", ".join(f"{short} {packages[name]}" for name, short in SHORT_PACKAGES.items()
                     if packages.get(name))


def _estimators(chosen: list[dict]) -> list[str]:
    return facets.estimator_order(e for run in chosen for e in run["headline"])


def describe_changes(changes: dict) -> str:
    """The flagged moves in words, e.g. "regression: analytic held-out −ELBO +3.02 (> 1.00)"."""
    return "; ".join(f"{c['flag']}: {facets.estimator_short_name(e)} {METRICS[m]} "
                     f"{c['delta']:+.2f} "
                     f"(> {c['tolerance']:.2f})"
                     for e, metrics in changes.items() for m, c in metrics.items() if c["flag"])


def change_label(changes: dict) -> str:
    flags = {c["flag"] for metrics in changes.values() for c in metrics.values() if c["flag"]}
    if flags:
        return " and ".join(f"**{flag}**" for flag in sorted(flags, reverse=True))
    return "within seed noise" if changes else "first run"


def table(chosen: list[dict]) -> pd.DataFrame:
    """The series newest first, one row per run: scores as "mean ± std over seeds" (nats),
    the change from the previous run, then date, code and packages."""
    rows = []
    for entry in reversed(chosen):
        row = {"Run": entry["id"], "Verdict": entry.get("verdict") or "–"}
        for estimator in _estimators(chosen):
            name, scores = facets.estimator_short_name(estimator), entry["headline"].get(
                estimator, {})
            row[f"{name} −ELBO"] = _mean_std(scores.get("neg_elbo"))
            row[f"{name} IWAE"] = _mean_std(scores.get("iwae_nll"))
        row["Change"] = change_label(entry.get("changes", {}))
        row.update({"Finished (UTC)": _date(entry["date"]), "Code": entry.get("code") or "–",
                    "Packages": _packages(entry["packages"]),
                    # another processor trains other weights from the same seed (runs.provenance)
                    "Processor": provenance.describe(entry.get("processor"))})
        rows.append(row)
    return pd.DataFrame(rows)


def trend_figure(chosen: list[dict], dpi: int = 100) -> bytes:
    """PNG: per estimator, held-out -ELBO (mean ± std over seeds, solid) and IWAE (dashed)
    for each run of the series, oldest left; flagged runs ringed in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.8))
    x = list(range(len(chosen)))
    for estimator in _estimators(chosen):
        colour = facets.estimator_colour(estimator)
        for metric, style in (("neg_elbo", "-"), ("iwae_nll", "--")):
            scores = [(run["headline"].get(estimator) or {}).get(metric) or {} for run in chosen]
            means = [_number(s.get("mean")) for s in scores]
            means = [m if m is not None else float("nan") for m in means]
            stds = [_number(s.get("std")) or 0.0 for s in scores]
            ax.errorbar(x, means, yerr=stds, fmt="o" + style, color=colour, capsize=3,
                        markerfacecolor=colour if metric == "neg_elbo" else "white",
                        label=f"{facets.estimator_label(estimator)}: {METRICS[metric]}")
            for xi, run, mean in zip(x, chosen, means):
                change = (run.get("changes", {}).get(estimator) or {}).get(metric) or {}
                if change.get("flag") == "regression":
                    ax.plot(xi, mean, "o", ms=16, mfc="none", mec="red", mew=2)
                    ax.annotate(f"{change['delta']:+.1f}", (xi, mean), xytext=(9, 6),
                                textcoords="offset points", color="red", fontsize=9)
    # run ids are "<yyyymmdd>-<hhmmss>-<flow-run name>" by default: the date is on line one
    ax.set_xticks(x, [f"{_date(run['date'])[5:]}\n{re.sub(r'^[0-9]{8}-[0-9]{6}-', '', run['id'])}"
                      for run in chosen], fontsize=7)
    ax.set_ylabel("nats per test image\n(lower is better)")
    ax.set_title("Held-out scores of this configuration's runs (mean ± std over seeds)",
                 fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_index(artifacts_root: str | os.PathLike, entries: list[dict]) -> Path:
    """``<root>/index.html``: every run, newest first, with its status, configuration, headline
    numbers and a link to its report.html (where it has one)."""
    root = store.location(artifacts_root)
    esc = html.escape
    rows = []
    for entry in reversed(entries):
        report = store.location(entry["path"]) / "report.html"
        name = esc(entry["id"]) + (" <b>(latest)</b>" if entry.get("latest") else "")
        link = (f"<a href='{esc(store.relative(report, root))}'>{name}</a>"
                if report.is_file() else name)
        status = esc(entry["status"]) + (f": {esc(str(entry['error']))}"
                                         if entry.get("error") else "")
        scores = "<br>".join(
            f"{esc(facets.estimator_label(e))}: −ELBO {_mean_std(s.get('neg_elbo'))}, "
            f"IWAE {_mean_std(s.get('iwae_nll'))}" for e, s in entry["headline"].items())
        rows.append(f"<tr class='{esc(entry['status'])}'><td>{link}</td><td>{status}</td>"
                    f"<td>{_date(entry['date'])}</td>"
                    f"<td><code>{esc(entry['configuration'] or '–')}</code></td>"
                    f"<td><code>{esc(entry.get('code') or '–')}</code></td>"
                    f"<td>{scores or '–'}</td></tr>")
    style = ("body{font-family:sans-serif;max-width:1300px;margin:2em auto}"
             "table{border-collapse:collapse;font-size:13px}"
             "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;"
             "vertical-align:top}tr.failed td,tr.incomplete td{color:#a33}")
    body = ("<h1>VAE runs</h1><p>Newest first. Scores: held-out nats per test image, mean ± std "
            "over seeds (lower is better). Runs with the same configuration key form a series "
            "(see the <code>vae-history</code> artifact in Prefect).</p><table><tr><th>Run</th>"
            "<th>Status</th><th>Date (UTC)</th><th>Configuration</th><th>Code</th>"
            f"<th>Scores</th></tr>{''.join(rows)}</table>")
    return storage.write_text(root / "index.html", (
        "<!doctype html><html><head><meta charset='utf-8'><title>VAE runs</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"))
