"""TensorBoard summaries of one model's training, written with ``tf.summary`` as event files
into the model's own directory (``models/<name>/``), so that

    tensorboard --logdir artifacts/latest/models      # one curve per model of a run
    tensorboard --logdir artifacts/runs               # every run's models

shows each model as a TensorBoard run. Per epoch: train and held-out -ELBO, the held-out KL and
reconstruction terms, images per second; after training: reconstructions of test images and
decoder means for z drawn from the prior. All scalars are nats per image, step = epoch.

The writer's default is thread-local in TensorFlow, so models trained in parallel threads each
write only to their own directory. A resumed training appends a new event file beside the old
ones and continues at the next epoch (the epochs written before are not repeated).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

# tag -> (history key, description); TensorBoard groups charts by the tag's first part
SCALARS = {
    "neg_elbo/train": ("train_neg_elbo", "Mean -ELBO over the epoch's training batches "
                                         "(the model's own KL estimator), nats per image"),
    "neg_elbo/heldout": ("heldout_neg_elbo", "Held-out -ELBO (analytic KL), nats per image"),
    "heldout/kl": ("heldout_kl", "Held-out KL(q(z|x) || p(z)), nats per image"),
    "heldout/reconstruction": ("heldout_reconstruction",
                               "Held-out reconstruction term -E_q[log p(x|z)], nats per image"),
    "speed/images_per_second": ("images_per_second", "Training images per second this epoch "
                                                     "(the first epoch includes compilation)"),
}
N_IMAGES = 8
SCALE = 3  # 28 px digits are tiny on a TensorBoard card: draw each pixel 3x3


class EpochSummaries:
    """``on_epoch`` callback for :func:`vae_model.training.fit`, plus :meth:`images`.

    Use as a context manager (closes the writer); every call flushes, so a running TensorBoard
    shows the epoch as soon as it is checkpointed."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.writer = tf.summary.create_file_writer(str(self.directory))

    def __call__(self, entry: dict) -> None:
        """Write one history entry of ``training.fit`` (keys as in ``SCALARS``; ``epoch``)."""
        with self.writer.as_default(step=int(entry["epoch"])):
            for tag, (key, description) in SCALARS.items():
                if entry.get(key) is not None:
                    tf.summary.scalar(tag, float(entry[key]), description=description)
        self.writer.flush()

    def images(self, model, test_images: np.ndarray, seed: int, step: int) -> None:
        """Test images above their reconstructions (decoder mean at the posterior mean), and
        decoder means for z ~ N(0, I); the same test images and z for every model of a run."""
        originals, reconstructions, generations = example_images(model, test_images, seed)
        with self.writer.as_default(step=int(step)):
            tf.summary.image("reconstructions", _grid([originals, reconstructions]),
                             description=f"Top: {N_IMAGES} test images; bottom: decoder mean "
                                         "at the posterior mean of each")
            tf.summary.image("prior_samples",
                             _grid([generations[:N_IMAGES // 2], generations[N_IMAGES // 2:]]),
                             description="Decoder mean for z drawn from the prior N(0, I)")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "EpochSummaries":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def example_images(model, test_images: np.ndarray, seed: int):
    """(originals, reconstructions, generations), each (N_IMAGES, 28, 28) in [0, 1]."""
    picks = np.random.default_rng([seed, 23]).choice(len(test_images), N_IMAGES, replace=False)
    originals = test_images[picks].astype(np.float32) / 255.0
    reconstructions = model.decode(model.encode(originals).mean()).mean().numpy()
    z = np.random.default_rng([seed, 11]).standard_normal((N_IMAGES, model.latent_size))
    generations = model.decode(tf.constant(z, tf.float32)).mean().numpy()
    return originals, reconstructions, generations


def _grid(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of (n, 28, 28) images as one (1, H, W, 1) image, each pixel SCALE x SCALE."""
    canvas = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    canvas = np.kron(np.clip(canvas, 0.0, 1.0), np.ones((SCALE, SCALE), np.float32))
    return canvas[None, :, :, None].astype(np.float32)
