"""Figures of a run, one function each; headless (Agg) matplotlib, PNG files.

Functions take plain arrays (``draw_*``) so they are cheap to test; :func:`render_all` computes
those arrays from trained models so that every model sees the same test images and the same z.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from vae_model import storage  # noqa: E402
from vae_model.data import CLASS_NAMES  # noqa: E402

DPI = 110
N_EXAMPLES = 10
ESTIMATOR_LABELS = {"analytic": "analytic KL", "monte_carlo": "Monte-Carlo KL"}


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return storage.write_bytes(path, buffer.getvalue())


def _image_rows(axes_row, images, label):
    for ax, image in zip(axes_row, images):
        ax.imshow(image, cmap="binary", vmin=0.0, vmax=1.0)
        ax.set_xticks([]), ax.set_yticks([])
    axes_row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)


def draw_image_grid(rows: dict[str, np.ndarray], title: str, path: Path) -> Path:
    """Rows of 28x28 images in [0, 1], each row labelled on the left."""
    n_cols = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.2 * n_cols + 1.6, 1.3 * len(rows) + 0.6),
                             squeeze=False)
    for axes_row, (label, images) in zip(axes, rows.items()):
        _image_rows(axes_row, images, label)
    fig.suptitle(title, fontsize=12)
    return _save(fig, path)


def draw_manifold(images: np.ndarray, quantiles: np.ndarray, title: str, path: Path) -> Path:
    """A (n, n, 28, 28) grid of decoded images laid out as one picture, z axes labelled."""
    n = images.shape[0]
    canvas = images.transpose(0, 2, 1, 3).reshape(n * 28, n * 28)
    fig, ax = plt.subplots(figsize=(7.5, 7.5))
    ax.imshow(canvas, cmap="binary", vmin=0.0, vmax=1.0,
              extent=(quantiles[0], quantiles[-1], quantiles[0], quantiles[-1]))
    ax.set_xlabel("z[0] (standard-normal quantiles)")
    ax.set_ylabel("z[1]")
    ax.set_title(title)
    return _save(fig, path)


def draw_latent_scatter(means: np.ndarray, labels: np.ndarray, title: str, path: Path) -> Path:
    """Posterior means of test images (first two latent dimensions), coloured by class."""
    fig, ax = plt.subplots(figsize=(8, 6.5))
    colours = plt.get_cmap("tab10")
    for c, name in enumerate(CLASS_NAMES):
        points = means[labels == c]
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color=colours(c), label=name,
                   rasterized=True)
    ax.set_xlabel("E[z[0] | x]")
    ax.set_ylabel("E[z[1] | x]")
    ax.set_title(title)
    ax.legend(markerscale=5, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def draw_curves(histories: dict[str, list[dict]], path: Path) -> Path:
    """Left: train and held-out -ELBO per epoch for every model; right: its two terms."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.get_cmap("tab10")
    for i, (name, history) in enumerate(histories.items()):
        epochs = [h["epoch"] for h in history]
        left.plot(epochs, [h["train_neg_elbo"] for h in history], "--", color=colours(i),
                  label=f"{name} train")
        left.plot(epochs, [h["heldout_neg_elbo"] for h in history], "-o", ms=3, color=colours(i),
                  label=f"{name} held-out")
        right.plot(epochs, [h["heldout_reconstruction"] for h in history], "-o", ms=3,
                   color=colours(i), label=f"{name} reconstruction")
    kl_axis = right.twinx()
    for i, (name, history) in enumerate(histories.items()):
        kl_axis.plot([h["epoch"] for h in history], [h["heldout_kl"] for h in history], ":s",
                     ms=3, color=colours(i), label=f"{name} KL")
    left.set(xlabel="epoch", ylabel="-ELBO (nats per image)", title="Training curves")
    right.set(xlabel="epoch", ylabel="reconstruction -log p(x|z) (nats)",
              title="Held-out terms (solid: reconstruction, dotted: KL)")
    kl_axis.set_ylabel("KL(q(z|x) || p(z)) (nats)")
    left.legend(fontsize=8)
    lines = right.get_legend_handles_labels()
    kl_lines = kl_axis.get_legend_handles_labels()
    right.legend(lines[0] + kl_lines[0], lines[1] + kl_lines[1], fontsize=8, ncol=2,
                 loc="upper center", bbox_to_anchor=(0.5, -0.14))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return _save(fig, path)


def draw_gradient_variance(variances: dict[str, dict[str, dict]], path: Path) -> Path:
    """Grouped bars: at each model's weights, the gradient variance under each estimator, of
    the whole loss (left) and of its KL term alone (right, where the estimators differ)."""
    models = list(variances)
    estimators = sorted({e for v in variances.values() for e in v})
    fig, axes = plt.subplots(1, 2, figsize=(2.4 * len(models) + 7, 4.5))
    width = 0.8 / max(len(estimators), 1)
    panels = [("total_variance", "whole -ELBO"), ("kl_term_variance", "KL term only")]
    for ax, (field, title) in zip(axes, panels):
        for j, estimator in enumerate(estimators):
            values = [variances[m].get(estimator, {}).get(field, np.nan) for m in models]
            bars = ax.bar(np.arange(len(models)) + j * width, values, width,
                          label=ESTIMATOR_LABELS.get(estimator, estimator))
            ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_xticks(np.arange(len(models)) + width * (len(estimators) - 1) / 2,
                      [f"weights of\n{m}" for m in models])
        ax.set_ylabel("trace of gradient covariance")
        ax.set_title(f"Gradient variance: {title}")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Over repeated draws of z, same batch, fixed weights", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def draw_scores(heldout: dict[str, dict], path: Path) -> Path:
    """Held-out -ELBO and IWAE bound per model, one row each, best (lowest) at the top."""
    names = sorted(heldout, key=lambda n: heldout[n]["neg_elbo"], reverse=True)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.8))
    ax.plot([heldout[n]["neg_elbo"] for n in names], y, "o", label="-ELBO (analytic KL)")
    ax.plot([heldout[n]["iwae_nll"] for n in names], y, "s",
            label=f"IWAE-{heldout[names[0]]['iwae_k']} NLL bound")
    for i, n in enumerate(names):
        ax.annotate(f"{heldout[n]['neg_elbo']:.2f}", (heldout[n]["neg_elbo"], i),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_yticks(y, names)
    ax.set_xlabel("nats per test image (lower is better)")
    ax.set_title("Held-out scores per model")
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.1, y=0.15)
    ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    return _save(fig, path)


def draw_comparison(originals: np.ndarray, columns: dict[str, dict[str, np.ndarray]],
                    path: Path) -> Path:
    """The seed's comparison in one figure: a column per model with its reconstructions
    (decoder mean) and its generations (decoder mean) of the same inputs and z."""
    n = min(len(originals), 6)
    width = min(5.2, 26.0 / len(columns))  # a sweep's many models stay within one screen
    fig, axes = plt.subplots(3, len(columns), figsize=(width * len(columns), 3.4 * width / 5.2),
                             squeeze=False)
    for col, (name, panels) in enumerate(columns.items()):
        for row, (label, images) in enumerate([("test images", originals),
                                               ("reconstruction (mean)", panels["reconstruction"]),
                                               ("generation (mean)", panels["generation"])]):
            ax = axes[row, col]
            ax.imshow(np.concatenate(list(images[:n]), axis=1), cmap="binary", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        axes[0, col].set_title(name, fontsize=11)
    fig.suptitle("Analytic vs Monte-Carlo KL: same test images, same prior draws", fontsize=12)
    return _save(fig, path)


def render_all(models: dict, test_images: np.ndarray, test_labels: np.ndarray,
               histories: dict[str, list[dict]], evaluations: dict[str, dict], figures_dir: Path,
               seed: int = 0) -> list[Path]:
    """Every figure of a run. ``models`` maps a model name to a trained VAE; ``evaluations``
    maps it to its evaluation.json content, where there is one."""
    figures_dir = Path(figures_dir)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(test_images), N_EXAMPLES, replace=False)
    originals = test_images[picks].astype(np.float32) / 255.0
    paths, columns = [], {}
    for name, model in models.items():
        latent = model.latent_size
        z_prior = tf.constant(rng_normal(seed, (N_EXAMPLES, latent)))
        q = model.encode(originals)
        z_post = q.sample(seed=tf.constant([seed, 1]))
        recon, generated = model.decode(z_post), model.decode(z_prior)
        rows_recon = {"test image": originals,
                      "reconstruction\n(sample)": recon.sample(seed=tf.constant([seed, 2])).numpy(),
                      "reconstruction\n(mean)": recon.mean().numpy()}
        paths.append(draw_image_grid(rows_recon, f"{name}: test images and reconstructions",
                                     figures_dir / f"reconstructions-{name}.png"))
        rows_gen = {"prior sample\n(sample)": generated.sample(seed=tf.constant([seed, 3])).numpy(),
                    "prior sample\n(mean)": generated.mean().numpy()}
        paths.append(draw_image_grid(rows_gen, f"{name}: generations from z ~ N(0, I)",
                                     figures_dir / f"generations-{name}.png"))
        columns[name] = {"reconstruction": rows_recon["reconstruction\n(mean)"],
                         "generation": rows_gen["prior sample\n(mean)"]}
        means = _posterior_means(model, test_images)
        paths.append(draw_latent_scatter(means, test_labels,
                                         f"{name}: test-set posterior means by class",
                                         figures_dir / f"latent-{name}.png"))
        if latent == 2:
            quantiles = np.linspace(0.05, 0.95, 20)
            z_values = tfp.distributions.Normal(0.0, 1.0).quantile(quantiles).numpy()
            grid = np.stack(np.meshgrid(z_values, z_values[::-1]), -1).reshape(-1, 2)
            decoded = model.decode(tf.constant(grid, tf.float32)).mean().numpy()
            paths.append(draw_manifold(decoded.reshape(20, 20, 28, 28), z_values,
                                       f"{name}: decoder mean over the 2-D latent space",
                                       figures_dir / f"manifold-{name}.png"))
    paths.append(draw_curves(histories, figures_dir / "curves.png"))
    if evaluations:
        paths.append(draw_scores({n: e["heldout"] for n, e in evaluations.items()},
                                 figures_dir / "scores.png"))
        paths.append(draw_gradient_variance(
            {n: e["gradient_variance"] for n, e in evaluations.items()},
            figures_dir / "gradient-variance.png"))
    paths.append(draw_comparison(originals, columns, figures_dir / "comparison.png"))
    return paths


def rng_normal(seed: int, shape) -> np.ndarray:
    """The same prior draws for every model of a run."""
    return np.random.default_rng([seed, 11]).standard_normal(shape).astype(np.float32)


def _posterior_means(model, images: np.ndarray, batch_size: int = 5000) -> np.ndarray:
    return np.concatenate([model.encode(images[i:i + batch_size].astype(np.float32) / 255.0)
                           .mean().numpy() for i in range(0, len(images), batch_size)])
