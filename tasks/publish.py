"""What a run shows in the Prefect UI: its report as a markdown artifact with the figures inline
(downscaled PNG previews as data: URIs; a browser does not open file:// links from the UI's
page), a table of the per-estimator summary, and the ``vae-history`` series with its trend
figure. Artifact keys are stable, so each scheduled run adds a version.

What one run stores in Prefect's database stays under ``RUN_BUDGET`` bytes: the previews are
shrunk until the report fits its share. Full-size PNGs stay in ``figures/`` and report.html.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pandas as pd
from PIL import Image

from vae_model.results import history, report
from vae_model.results.tables import cell, markdown_table, plan_sentences
from vae_model.runs import storage, store

RUN_BUDGET = 1_500_000  # bytes of artifact data per run, all artifacts together
HISTORY_BUDGET = 200_000
TABLE_BUDGET = 50_000
REPORT_BUDGET = RUN_BUDGET - HISTORY_BUDGET - TABLE_BUDGET
PREVIEW_WIDTHS = (900, 720, 560, 420, 320)  # px, tried in turn until the report fits


def png_preview(path: str | Path, max_width: int, colours: int = 64) -> bytes:
    """The PNG at most ``max_width`` px wide, on white, in a palette of ``colours`` (figures
    are mostly flat colours: a palette PNG is a fraction of the size at the same look)."""
    with store.location(path).open("rb") as file, Image.open(file) as image:
        image.load()
        rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    if flat.width > max_width:
        flat = flat.resize((max_width, round(flat.height * max_width / flat.width)),
                           Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    flat.quantize(colours, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


KEY_COLUMNS = ("Configuration", "Run", "Estimator", "Model", "Pair", "Seed")
UI_WIDTH = 820  # px: the artifact page's text column in a 1,400 px window (cells do not wrap)


def _width(frame: pd.DataFrame, column: str) -> float:
    chars = max([len(str(column))] + [len(cell(v)) for v in frame[column]])
    return 7.5 * chars + 28


def fit_width(title: str, frame: pd.DataFrame, width: float = UI_WIDTH):
    """[(title, frame)] that fit ``width`` px: a Configuration column with one value moves into
    the title; a table still too wide is split into several, each repeating the key columns
    (run, model, estimator...)."""
    short = title.split(":")[0]
    if "Configuration" in frame.columns and len(frame.columns) > 1 and \
            frame["Configuration"].nunique() == 1:
        title = f"{title} — {frame['Configuration'].iloc[0]}"
        frame = frame.drop(columns="Configuration")
    keys = [c for c in frame.columns if c in KEY_COLUMNS]
    rest = [c for c in frame.columns if c not in keys]
    base = sum(_width(frame, c) for c in keys)
    chunks = _pack(frame, rest, width - base)
    last = sum(_width(frame, c) for c in chunks[-1])
    if len(chunks) > 1 and last < (width - base) / 4:  # rather as many tables of even widths
        for limit in range(int(sum(_width(frame, c) for c in rest) / len(chunks)),
                           int(width - base)):
            even = _pack(frame, rest, limit)
            if len(even) == len(chunks):
                chunks = even
                break
    if len(chunks) == 1:
        return [(title, frame)]
    return [(title if i == 0 else f"{short} (continued)", frame[keys + chunk])
            for i, chunk in enumerate(chunks)]


def _pack(frame: pd.DataFrame, columns: list, width: float) -> list[list]:
    """Columns in order, into as few groups of at most ``width`` px as greedy packing gives."""
    chunks, current, used = [], [], 0.0
    for column in columns:
        if current and used + _width(frame, column) > width:
            chunks.append(current)
            current, used = [], 0.0
        current.append(column)
        used += _width(frame, column)
    chunks.append(current)
    return chunks


def tables_markdown(tables, level: str = "###") -> list[str]:
    lines = []
    for title, frame in tables:
        for part_title, part in fit_width(title, frame):
            lines += [f"{level} {part_title}", "", markdown_table(part), ""]
    return lines


def verdict(metrics: dict) -> str | None:
    return (metrics.get("comparison") or {}).get("verdict")


def _headline(metrics: dict) -> list[str]:
    """The verdict, and under it the plan that fixed its seeds (if the run had one)."""
    if not verdict(metrics):
        return []
    plans = plan_sentences(metrics)
    return [f"**Verdict:** {verdict(metrics)}", ""] + (plans + [""] if plans else [])


def _caption(path: Path) -> str:
    try:
        return report.caption(path)
    except Exception:  # a figure the report does not know: its file name says enough
        return path.stem


def report_markdown(run: Path, metrics: dict, budget: int = REPORT_BUDGET) -> str:
    """Verdict, tables, then every figure inline, previews shrunk until the whole fits
    ``budget`` bytes (figures that do not fit even at the smallest width are left out, and
    the text says so)."""
    head = [f"# VAE run `{run.name}`", "", *_headline(metrics)]
    head += ["Held-out scores on the Fashion-MNIST test images, nats per image (lower is "
             "better); every model is scored with the analytic KL.", ""]
    head += tables_markdown(report.summary_tables(metrics))
    tail = ["", f"Full-size figures and the full report: `{run / 'report.html'}` on the machine "
            "that ran the pipeline."]
    figures = sorted((run / "figures").glob("*.png"), key=report.figure_order)
    text_size = len("\n".join(head + tail).encode())
    for width in PREVIEW_WIDTHS:
        blocks, size, left_out = [], text_size, []
        for path in figures:
            caption = _caption(path).replace("[", "(").replace("]", ")")
            block = f"**{caption}**\n\n![{path.stem}]({data_uri(png_preview(path, width))})\n"
            if size + len(block.encode()) > budget:
                left_out.append(path.name)
                continue
            blocks.append(block)
            size += len(block.encode())
        if not left_out:
            break
    body = ["## Figures", ""] + blocks
    if left_out:
        body += [f"Left out to keep the artifact under {budget / 1000:,.0f} kB: "
                 + ", ".join(left_out) + " (in report.html)."]
    return "\n".join(head + body + tail)


def history_markdown(chosen: list[dict], configuration: str, figure: bytes) -> str:
    rule = ("A run is flagged when a per-estimator mean moves by more than "
            f"max({history.MIN_CHANGE:g} nat, {history.SEED_STDS:g} × the seed std) from the "
            "previous complete run of this configuration; seeds are fixed, so such a move is a "
            "change in code, packages or machine, not seed noise.")
    lines = [f"# Runs of configuration `{configuration}`", "",
             f"The last {len(chosen)} complete run(s), newest first in the table. {rule}", "",
             f"![Trend of held-out scores]({data_uri(figure)})", ""]
    k = chosen[-1].get("iwae_k") if chosen else None
    lines += tables_markdown([(f"Held-out −ELBO and IWAE-{k or 'K'}, nats per image: mean ± "
                               "std over seeds", history.table(chosen))])
    flagged = [f"- `{run['id']}`: {history.describe_changes(run['changes'])}"
               for run in reversed(chosen) if history.describe_changes(run.get("changes", {}))]
    if flagged:
        lines += ["### Flagged changes", "", *flagged]
    return "\n".join(lines)


def summary_records(metrics: dict) -> list[dict]:
    """The per-estimator summary (mean ± std over seeds) as records for a table artifact."""
    tables = report.summary_tables(metrics)
    title, frame = next((t for t in tables if t[0].startswith("Per estimator")), tables[0])
    return [{str(k): cell(v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def build(run: Path, artifacts_root: str, last: int = 20) -> dict:
    """Everything to publish for ``run`` (a complete run directory): the markdown and table
    artifacts' content, and index.html written. Returns {"report", "summary", "table",
    "history", "series", "index"}."""
    run = store.location(run)
    metrics = storage.read_json(run / "metrics.json")
    manifest = storage.read_json(run / "manifest.json")
    provenance = history.record_provenance(run, manifest.get("parameters") or {})
    entries = history.runs(artifacts_root, complete=run.name)
    chosen = history.series(entries, provenance["configuration"], last=last)
    title, frame = report.summary_tables(metrics)[0]
    summary = [f"# VAE run `{run.name}`", "", *_headline(metrics),
        *tables_markdown([(title, frame)]),
        "Figures and every model: the `vae-report` artifact; on disk "
        f"`{run / 'report.html'}`."]
    return {"report": report_markdown(run, metrics), "summary": "\n".join(summary),
            "table": summary_records(metrics),
            "history": history_markdown(chosen, provenance["configuration"],
                                        history.trend_figure(chosen)),
            "series": chosen,
            "index": history.write_index(artifacts_root, entries)}
