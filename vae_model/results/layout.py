"""What every figure of a run shares: headless matplotlib, one colour per estimator, and small
multiples that wrap into rows and onto further pages, so that a figure is at most
``MAX_WIDTH_PX`` wide and ``MAX_HEIGHT_PX`` tall whatever the number of models."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vae_model.results.facets import estimator_colour, estimator_label  # noqa: E402
from vae_model.runs import storage  # noqa: E402

DPI = 100
MAX_WIDTH_PX = 1400
MAX_HEIGHT_PX = 1800
MIN_WIDTH_IN = 6.4  # a legend of four entries fits
HEADER_IN = 0.9  # title above the panels, axis label and legend below

plt.rcParams.update({
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 9,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.3, "figure.dpi": DPI,
})


def tag(artists, likelihood: str):
    """Mark plotted data with the likelihood it belongs to (tests check that no Axes holds data
    of two likelihoods). Accepts one artist or any nesting of lists/containers of them."""
    if hasattr(artists, "set_gid"):
        artists.set_gid(f"likelihood={likelihood}")
    elif artists is not None:
        for artist in artists:
            tag(artist, likelihood)
    return artists


def pages(items: list, per_page: int) -> list[list]:
    return [items[i:i + per_page] for i in range(0, len(items), per_page)] or [[]]


def page_path(figures_dir: Path, kind: str, page: int) -> Path:
    """``curves.png``, then ``curves-page2.png``, ``curves-page3.png``, ..."""
    return Path(figures_dir) / (f"{kind}.png" if page == 0 else f"{kind}-page{page + 1}.png")


def facet_grid(n_facets: int, panel_in: tuple[float, float], max_cols: int = 4,
               layout: str = "constrained"):
    """A figure of ``n_facets`` panels, at most ``max_cols`` per row, each panel ``panel_in``
    inches (widened so that a figure of one or two panels still has room for its legend, and
    shrunk so that it stays within the width and height caps). Returns the figure and the first
    ``n_facets`` Axes in reading order; unused cells are removed. ``layout="compressed"``
    for panels of fixed aspect (images), which constrained layout would let overflow."""
    width, height = panel_in
    cols = max(1, min(n_facets, max_cols))
    rows = max(1, math.ceil(n_facets / cols))
    width = min(max(width, MIN_WIDTH_IN / cols), MAX_WIDTH_PX / DPI / cols)
    height = min(height, (MAX_HEIGHT_PX / DPI - HEADER_IN) / rows)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * width, rows * height + HEADER_IN),
                             squeeze=False, layout=layout)
    flat = list(axes.flat)
    for ax in flat[n_facets:]:
        ax.remove()
    return fig, flat[:n_facets]


def label_bottom(axes: list, xlabel: str) -> None:
    """The x label under the lowest panel of each column only (a figure-wide label would
    collide with the legend below the panels)."""
    cols = axes[0].get_gridspec().ncols if axes else 1
    for i, ax in enumerate(axes):
        if i + cols >= len(axes):
            ax.set_xlabel(xlabel)


def rows_per_page(panel_height_in: float) -> int:
    """How many rows of panels fit under the height cap at their natural height."""
    return max(1, int((MAX_HEIGHT_PX / DPI - HEADER_IN) // panel_height_in))


def estimator_legend(fig, estimators, extra_handles=()):
    """One legend for the whole figure, below the panels (above, it would collide with the
    title): a patch per estimator colour, then any line styles the panels use."""
    from matplotlib.patches import Patch


    handles = [Patch(color=estimator_colour(e), label=estimator_label(e)) for e in estimators]
    handles += list(extra_handles)
    columns = max(1, min(len(handles), int(fig.get_figwidth() / 1.6)))
    fig.legend(handles=handles, loc="outside lower center", ncol=columns, frameon=False)


def save(fig, path: Path) -> Path:
    """Saved at the figure's own size (no tight bbox, which could grow it past the caps)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return storage.write_bytes(path, buffer.getvalue())
