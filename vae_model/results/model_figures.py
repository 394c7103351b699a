"""Images from trained models: reconstructions, generations, the latent space (posterior means)
and, for 2-D latents, the decoder manifold.

By default one model per configuration and estimator is drawn, its lowest seed
(:func:`vae_model.results.facets.representatives`), as small multiples in one figure per kind: the
two estimators of a configuration side by side, on the same test images and the same z.
``all_models=True`` adds one figure set per model (``reconstructions-<model>.png``, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from vae_model.model.data import CLASS_NAMES
from vae_model.results import facets
from vae_model.results.facets import estimator_colour
from vae_model.results.layout import facet_grid, page_path, pages, plt, rows_per_page, save

N_EXAMPLES = 8
MANIFOLD_SIZE = 20
GAP = 6  # px of white between image strips
# (small-multiple panel, panel when a figure has at most two facets), inches
# Image strips: per strip (row of images) height, small and large, plus a title line.
STRIP_IN, TITLE_IN = (0.42, 0.62), 0.45
PANELS = {"reconstructions": ((4.6, 2.4), (6.0, 3.0)), "generations": ((4.6, 2.0), (6.0, 2.5)),
          "latent": ((3.4, 3.2), (5.2, 4.6)), "manifold": ((3.4, 3.5), (5.4, 5.6))}
MAX_COLS = {"reconstructions": 3, "generations": 3, "latent": 4, "manifold": 4}


def rng_normal(seed: int, shape) -> np.ndarray:
    """The same prior draws for every model of a run (per latent size)."""
    return np.random.default_rng([seed, 11]).standard_normal(shape).astype(np.float32)


def _posterior_means(model, images: np.ndarray, batch_size: int = 5000) -> np.ndarray:
    return np.concatenate([model.encode(images[i:i + batch_size].astype(np.float32) / 255.0)
                           .mean().numpy() for i in range(0, len(images), batch_size)])


def draw_images(model, originals: np.ndarray, test_images: np.ndarray, seed: int) -> dict:
    """What the figures show of one model, as arrays (the model can be dropped afterwards)."""
    z_prior = tf.constant(rng_normal(seed, (len(originals), model.latent_size)))
    z_post = model.encode(originals).sample(seed=tf.constant([seed, 1]))
    reconstruction, generation = model.decode(z_post), model.decode(z_prior)
    drawn = {"reconstruction_mean": reconstruction.mean().numpy(),
             "reconstruction_sample": reconstruction.sample(seed=tf.constant([seed, 2])).numpy(),
             "generation_mean": generation.mean().numpy(),
             "generation_sample": generation.sample(seed=tf.constant([seed, 3])).numpy(),
             "posterior_means": _posterior_means(model, test_images)[:, :2]}
    if model.latent_size == 2:
        quantiles = np.linspace(0.05, 0.95, MANIFOLD_SIZE)
        z_values = tfp.distributions.Normal(0.0, 1.0).quantile(quantiles).numpy()
        grid = np.stack(np.meshgrid(z_values, z_values[::-1]), -1).reshape(-1, 2)
        decoded = model.decode(tf.constant(grid, tf.float32)).mean().numpy()
        drawn["manifold"] = decoded.reshape(MANIFOLD_SIZE, MANIFOLD_SIZE, 28, 28)
    return drawn


def _strip_canvas(strips: list[np.ndarray]) -> tuple[np.ndarray, list[float]]:
    """Rows of 28x28 images stacked into one picture with white gaps; the rows' centres."""
    width = max(len(s) for s in strips) * 28
    canvas, centres = [], []
    for strip in strips:
        row = np.zeros((28, width))
        row[:, :len(strip) * 28] = np.concatenate(list(strip), axis=1)
        centres.append(sum(c.shape[0] for c in canvas) + 14)
        canvas += [row, np.zeros((GAP, width))]
    return np.concatenate(canvas[:-1]), centres


def _strips_panel(ax, rows: list[tuple[str, str, np.ndarray]]) -> None:
    canvas, centres = _strip_canvas([images for _, _, images in rows])
    ax.imshow(canvas, cmap="binary", vmin=0.0, vmax=1.0, interpolation="antialiased")
    ax.set_xticks([])
    ax.set_yticks(centres, [label for label, _, _ in rows])
    for tick, (_, colour, _) in zip(ax.get_yticklabels(), rows):
        tick.set_color(colour)
    ax.tick_params(axis="y", length=0)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _panel_rows(kind: str, group: dict, drawn: dict, originals: np.ndarray) -> list:
    rows = [("test images", "black", originals)] if kind == "reconstructions" else []
    field = "reconstruction" if kind == "reconstructions" else "generation"
    for estimator, names in group["models"].items():
        label = facets.estimator_label(estimator)
        rows += [(f"{label}: mean", estimator_colour(estimator), drawn[names[0]][f"{field}_mean"]),
                 (f"{label}: sample", estimator_colour(estimator),
                  drawn[names[0]][f"{field}_sample"])]
    return rows


def _grid(kind: str, n_facets: int, strips: int | None = None):
    """Panels sized for their content: image strips get the height their rows need, so that
    a one-model figure has no empty band below its three rows."""
    small, large = PANELS[kind]
    width, height = large if n_facets <= 2 else small
    if strips:
        height = TITLE_IN + strips * STRIP_IN[n_facets <= 2]
    return facet_grid(n_facets, (width, height), MAX_COLS[kind], layout="compressed")


def _per_configuration(kind: str, groups: list[dict], drawn: dict, originals, records) -> list:
    """Reconstructions or generations: a panel per configuration, both estimators inside."""
    small, large = PANELS[kind]
    per_page = MAX_COLS[kind] * rows_per_page(small[1])
    figures = []
    for page in pages(groups, per_page):
        rows = [_panel_rows(kind, group, drawn, originals) for group in page]
        fig, axes = _grid(kind, len(page), max(len(r) for r in rows))
        for ax, group, panel_rows in zip(axes, page, rows):
            _strips_panel(ax, panel_rows)
            ax.set_title(f"{group['title']} · {_seeds(group, records)}")
        fig.suptitle("Reconstructions of the same test images: decoder mean, a sample"
                     if kind == "reconstructions" else
                     "Generations from the same z ~ N(0, I): decoder mean, a sample")
        figures.append(fig)
    return figures


def _seeds(group: dict, records: dict) -> str:
    seeds = sorted({records[names[0]]["seed"] for names in group["models"].values()})
    return "seed " + "/".join(map(str, seeds))


def _per_model(kind: str, groups: list[dict], drawn: dict, records: dict) -> list:
    """Latent scatter or manifold: a panel per drawn model, the estimators side by side."""
    panels = [(group, estimator, names[0]) for group in groups
              for estimator, names in group["models"].items()
              if kind != "manifold" or "manifold" in drawn[names[0]]]
    if not panels:
        return []
    small, _ = PANELS[kind]
    figures = []
    for page in pages(panels, MAX_COLS[kind] * rows_per_page(small[1])):
        fig, axes = _grid(kind, len(page))
        for ax, (group, estimator, name) in zip(axes, page):
            (_latent_panel if kind == "latent" else _manifold_panel)(ax, drawn[name])
            ax.set_title(f"{group['title']}\n{facets.estimator_label(estimator)}, seed "
                         f"{records[name]['seed']}", color=estimator_colour(estimator))
        if kind == "latent":
            colours = plt.get_cmap("tab10")
            handles = [plt.Line2D([], [], ls="none", marker="o", color=colours(c), label=n)
                       for c, n in enumerate(CLASS_NAMES)]
            fig.legend(handles=handles, loc="outside lower center", frameon=False,
                       ncol=5 if fig.get_figwidth() < 9 else 10)
            fig.suptitle("Posterior means E[z | x] of the test images by class (z[0], z[1])")
        else:
            fig.suptitle("Decoder mean over a grid of z (normal quantiles 0.05–0.95)")
        figures.append(fig)
    return figures


def _latent_panel(ax, drawn: dict) -> None:
    means, labels = drawn["posterior_means"], drawn["labels"]
    colours = plt.get_cmap("tab10")
    for c in range(len(CLASS_NAMES)):
        points = means[labels == c]
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4, color=colours(c), rasterized=True,
                   linewidths=0)
    ax.set_xlabel("z[0]", labelpad=1)
    ax.set_ylabel("z[1]", labelpad=1)


def _manifold_panel(ax, drawn: dict) -> None:
    images = drawn["manifold"]
    n = images.shape[0]
    ax.imshow(images.transpose(0, 2, 1, 3).reshape(n * 28, n * 28), cmap="binary", vmin=0,
              vmax=1, interpolation="antialiased")  # a small panel shrinks it: no moiré
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_xlabel("z[0] →", labelpad=1)
    ax.set_ylabel("z[1] →", labelpad=1)
    ax.grid(False)


def figures_for(records: dict, drawn: dict, originals: np.ndarray) -> dict[str, list]:
    """kind -> figure pages, for the models in ``drawn`` (name -> :func:`draw_images` output
    plus "labels")."""
    groups = facets.group({name: records[name] for name in drawn})
    return {"reconstructions": _per_configuration("reconstructions", groups, drawn, originals,
                                                  records),
            "generations": _per_configuration("generations", groups, drawn, originals, records),
            "latent": _per_model("latent", groups, drawn, records),
            "manifold": _per_model("manifold", groups, drawn, records)}


def render(records: dict, load_model, test_images: np.ndarray, test_labels: np.ndarray,
           figures_dir: Path, seed: int = 0, all_models: bool = False) -> list[Path]:
    """The image figures of the representative models (and, with ``all_models``, of every
    model, one file set each); ``load_model(name)`` returns a trained VAE. Every model sees the
    same test images and the same z."""
    picks = np.random.default_rng(seed).choice(len(test_images), N_EXAMPLES, replace=False)
    originals = test_images[picks].astype(np.float32) / 255.0
    names = list(records) if all_models else list(facets.representatives(records))
    drawn = {}
    for name in names:  # one model in memory at a time
        drawn[name] = draw_images(load_model(name), originals, test_images, seed)
        drawn[name]["labels"] = test_labels
    chosen = facets.representatives(records)
    paths = [save(fig, page_path(figures_dir, kind, i))
             for kind, pages_ in figures_for(records, {n: drawn[n] for n in chosen},
                                             originals).items()
             for i, fig in enumerate(pages_)]
    if all_models:
        for name in records:
            for kind, pages_ in figures_for(records, {name: drawn[name]}, originals).items():
                paths += [save(fig, Path(figures_dir) / f"{kind}-{name}.png") for fig in pages_]
    return paths
