"""The run's figures: does the KL estimator matter, per configuration?

Small multiples, one facet per configuration (every setting but estimator and seed: one
likelihood per facet, so numbers that are not comparable never share an axis), the estimator
as colour and the seeds as a band or as points; facets wrap into rows and pages
(``curves-page2.png``) within :mod:`.layout`'s size caps. ``records`` maps a model name to
metrics.json's per-model entry; images of trained models are :mod:`.model_figures`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from vae_model.evaluation import decision, statistics
from vae_model.results import facets
from vae_model.results.facets import estimator_colour
from vae_model.results.forest import FOREST_ROWS_PER_PAGE, SEED_STYLE, differences_figure
from vae_model.results.layout import (estimator_legend, facet_grid, label_bottom, page_path, pages,
                                      plt, rows_per_page, save, tag)

MAX_COLS = 4
PANELS = {"curves": (3.4, 2.6), "scores": (3.4, 2.8), "gradient-variance": (3.4, 2.8)}


def _estimators(groups) -> list[str]:
    return facets.estimator_order(e for g in groups for e in g["models"])


def _by_epoch(histories: list[list[dict]], field: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values[seed, epoch]) with NaN where a seed lacks an epoch."""
    epochs = sorted({h["epoch"] for history in histories for h in history})
    values = np.full((len(histories), len(epochs)), np.nan)
    for i, history in enumerate(histories):
        for h in history:
            values[i, epochs.index(h["epoch"])] = h.get(field, np.nan)
    return np.asarray(epochs), values


def curves_figure(groups: list[dict], records: dict) -> plt.Figure:
    """Per facet: held-out -ELBO per epoch, the mean over seeds with the range over seeds as a
    band, and train -ELBO (mean over seeds) dashed."""
    fig, axes = facet_grid(len(groups), PANELS["curves"], MAX_COLS)
    for ax, group in zip(axes, groups):
        offsets = _spread(len(group["models"]), 0.12)
        for offset, (estimator, names) in zip(offsets, group["models"].items()):
            colour, histories = estimator_colour(estimator), [records[n]["history"] for n in names]
            epochs, heldout = _by_epoch(histories, "heldout_neg_elbo")
            _, train = _by_epoch(histories, "train_neg_elbo")
            tag(ax.plot(epochs, np.nanmean(train, 0), "--", color=colour, lw=1,
                        marker="x" if len(epochs) == 1 else None), group["likelihood"])
            if len(epochs) == 1:  # one epoch: the estimators side by side, not on top
                epochs = epochs + offset
            tag(ax.plot(epochs, np.nanmean(heldout, 0), "-o", color=colour, ms=3, lw=1.6),
                group["likelihood"])
            if len(names) > 1 and len(epochs) > 1:
                tag(ax.fill_between(epochs, np.nanmin(heldout, 0), np.nanmax(heldout, 0),
                                    color=colour, alpha=0.2, lw=0), group["likelihood"])
            elif len(names) > 1:  # one epoch: the band is a vertical range
                tag(ax.vlines(epochs, np.nanmin(heldout, 0), np.nanmax(heldout, 0), color=colour,
                              alpha=0.5, lw=5), group["likelihood"])
        ax.set_title(group["title"])
        if len(epochs) == 1:  # a locator would label fractions of the one epoch
            ax.set_xticks(np.round(epochs))
            ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    label_bottom(axes, "epoch")
    fig.supylabel("−ELBO (nats per image)")
    single_epoch = all(len(records[n]["history"]) <= 1 for n in records)
    fig.suptitle("Training curves: mean over seeds, band: range over seeds")
    estimator_legend(fig, _estimators(groups), [
        Line2D([], [], color="grey", marker="o", ms=3, label="held-out"),
        Line2D([], [], color="grey", ls="--", lw=1, marker="x" if single_epoch else None,
               label="train")])
    return fig


def _score_metrics(heldouts: list[dict]) -> list[tuple[str, str]]:
    metrics = [("neg_elbo", "−ELBO")]
    if heldouts and all(h.get("iwae_nll") is not None for h in heldouts):
        metrics.append(("iwae_nll", f"IWAE-{heldouts[0].get('iwae_k', 'K')}"))
    if heldouts and all(h.get("reference_nll") is not None for h in heldouts):
        metrics.append(("reference_nll", "reference NLL"))
    return metrics


def _spread(n: int, width: float = 0.1) -> np.ndarray:
    """Small horizontal offsets so that a facet's seeds do not hide each other."""
    return np.linspace(-width / 2, width / 2, n) if n > 1 else np.zeros(1)


def scores_figure(groups: list[dict], records: dict) -> plt.Figure:
    """Per facet: every seed's held-out score (hollow) and each estimator's mean with its 95%
    t-interval over seeds, for -ELBO, IWAE-K and (2-D latents) the reference NLL."""
    fig, axes = facet_grid(len(groups), PANELS["scores"], MAX_COLS)
    for ax, group in zip(axes, groups):
        evaluated = {e: [n for n in names if records[n].get("heldout")]
                     for e, names in group["models"].items()}
        metrics = _score_metrics([records[n]["heldout"] for ns in evaluated.values() for n in ns])
        offsets = _spread(len(evaluated), 0.5) if len(evaluated) > 1 else [0.0]
        for offset, (estimator, names) in zip(offsets, evaluated.items()):
            colour = estimator_colour(estimator)
            for i, (metric, _) in enumerate(metrics):
                values = [records[n]["heldout"][metric] for n in names]
                if not values:  # this estimator's models are not evaluated
                    continue
                x = i + offset
                if len(values) > 1:  # one seed is its own mean
                    tag(ax.plot(x + _spread(len(values)) - 0.12, values, color=colour,
                                **SEED_STYLE), group["likelihood"])
                mean, ci95 = statistics.t_interval(values)
                error = None if ci95 is None else [[mean - ci95[0]], [ci95[1] - mean]]
                tag(ax.errorbar([x + 0.05], [mean], yerr=error, fmt="D", color=colour, ms=5,
                                capsize=3, lw=1.5), group["likelihood"])
        ax.set_xticks(range(len(metrics)), [label for _, label in metrics])
        ax.set_xlim(-0.6, len(metrics) - 0.4)
        ax.grid(axis="x", visible=False)
        ax.set_title(group["title"])
        if not metrics or not any(evaluated.values()):
            ax.text(0.5, 0.5, "not evaluated", transform=ax.transAxes, ha="center")
    fig.supylabel("nats per test image (lower is better)")
    several = any(len(names) > 1 for g in groups for names in g["models"].values())
    fig.suptitle("Held-out scores: seeds (hollow), mean and 95% interval over seeds" if several
                 else "Held-out scores (one seed: no interval over seeds)")
    estimator_legend(fig, _estimators(groups))
    return fig


def gradient_variance_figure(groups: list[dict], records: dict) -> plt.Figure:
    """Per facet: at every model's trained weights, the gradient variance (trace of its
    covariance over draws of z) under each estimator, of the whole loss and of the KL term
    alone. Log scale; a variance that is zero up to rounding is drawn on the floor as ▼."""
    fig, axes = facet_grid(len(groups), PANELS["gradient-variance"], MAX_COLS)
    estimators = _estimators(groups)
    fields = [("total_variance", "whole −ELBO"), ("kl_term_variance", "KL term")]
    for ax, group in zip(axes, groups):
        variances = [records[n]["gradient_variance"] for ns in group["models"].values()
                     for n in ns if records[n].get("gradient_variance")]
        values = [v[e][f] for v in variances for e in estimators if e in v for f, _ in fields]
        top = max(values, default=1.0)
        real = [v for v in values if v > top * 1e-10]  # below: zero up to float64 rounding
        floor = min(real, default=top) / 10
        for offset, estimator in zip(_spread(len(estimators), 0.4), estimators):
            colour = estimator_colour(estimator)
            for i, (field, _) in enumerate(fields):
                ys = np.array([v[estimator][field] for v in variances if estimator in v])
                if not len(ys):
                    continue
                zero = ys <= top * 1e-10
                xs = i + offset + _spread(len(ys))
                tag(ax.plot(xs[~zero], ys[~zero], color=colour, **SEED_STYLE), group["likelihood"])
                if zero.any():
                    tag(ax.plot(xs[zero], [floor] * zero.sum(), "v", color=colour, ms=5),
                        group["likelihood"])
                    ax.annotate("0", (i + offset, floor), xytext=(0, 6), textcoords="offset points",
                                ha="center", color=colour)
        ax.set_yscale("log")
        ax.set_xticks(range(len(fields)), [label for _, label in fields])
        ax.set_xlim(-0.6, len(fields) - 0.4)
        ax.grid(axis="x", visible=False)
        ax.set_title(group["title"])
    fig.supylabel("gradient variance (trace of covariance)")
    fig.suptitle("Gradient variance over draws of z, at each model's weights")
    estimator_legend(fig, estimators)
    return fig


FIGURES = {"curves": curves_figure, "scores": scores_figure, "differences": differences_figure,
           "gradient-variance": gradient_variance_figure}


def _needs(kind: str, records: dict) -> bool:
    if kind == "scores":
        return any(r.get("heldout") for r in records.values())
    if kind == "differences":
        return any(r.get("heldout") for r in records.values()) and len(
            {r["estimator"] for r in records.values()}) > 1
    if kind == "gradient-variance":
        return any(r.get("gradient_variance") for r in records.values())
    return True


def build(kind: str, records: dict, margin: float = decision.DEFAULT_MARGIN,
          pilot: dict | None = None) -> list[plt.Figure]:
    """The pages of one figure kind, not saved (for tests and notebooks); ``margin``: the
    equivalence margin of the differences figure, ``pilot``: its plan's (:func:`plan.pilot`)."""
    if not records or not _needs(kind, records):
        return []
    groups = facets.group(records)
    per_page = (FOREST_ROWS_PER_PAGE if kind == "differences"
                else MAX_COLS * rows_per_page(PANELS[kind][1]))
    comparisons = max(1, sum(len(g["models"]) * (len(g["models"]) - 1) // 2 for g in groups))
    extra = ({"margin": margin, "pilot": pilot, "comparisons": comparisons}
             if kind == "differences" else {})
    return [FIGURES[kind](page, records, **extra) for page in pages(groups, per_page)]


def render_all(records: dict, figures_dir: Path, load_model=None, test_images=None,
               test_labels=None, seed: int = 0, all_models: bool = False,
               margin: float = decision.DEFAULT_MARGIN, pilot: dict | None = None) -> list[Path]:
    """Every figure of a run into ``figures_dir``; returns their paths. With ``load_model``
    (name -> trained VAE) and the test set, also the image figures of
    :mod:`.model_figures`: for the lowest seed of each configuration and estimator, or,
    with ``all_models``, also one set per model. PNGs left in ``figures_dir`` by an earlier
    render that this one did not draw are removed, so the directory matches the report."""
    figures_dir = Path(figures_dir)
    paths = [save(fig, page_path(figures_dir, kind, i))
             for kind in FIGURES for i, fig in enumerate(build(kind, records, margin, pilot))]
    if load_model is not None and test_images is not None:
        from vae_model.results import model_figures  # TensorFlow only where models are drawn

        paths += model_figures.render(records, load_model, test_images, test_labels,
                                      figures_dir, seed=seed, all_models=all_models)
    for stale in set(figures_dir.glob("*.png")) - set(paths):
        stale.unlink()
    return paths
