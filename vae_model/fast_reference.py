"""Decoding lattice points for :mod:`vae_model.reference`, for the MLP with Bernoulli pixels:
the same per-point terms as ``reference._grid_terms`` (the last hidden layer f(z), and
log p(0|z) + log p(z)), written for speed. Decoding is most of the reference NLL's work.

What makes it faster (measured on the ~740,000 points one trained model decodes: 2.3-2.7 µs a
point against 4.1-4.4, in turns in one process):

- **Units that are off left out of the last product**, as IWAE does
  (:mod:`vae_model.fast_evaluation`): the product 256 x 784 is 82% of the decoder's work, and
  of its 256 inputs a group of 512 nearby points turns on ~90 (exact: the others are zero).
  Nearby: ``PointCache`` decodes its new points in Z-order (``reference_tiles.z_order``), so
  that a group covers a small patch of the latent plane (in key order, a thin strip: ~130).
- **log p(0|z) = -Σ softplus(l)** with 8 logarithms instead of 784 (``softplus_sum``).
- **XLA where shapes are fixed, TensorFlow's kernels where they are not**: the ReLU layers and
  the softplus sum compile once; the pruned product, whose width varies, runs as a plain op.

The sum over 784 pixels is taken in another order than XLA takes it in ``_grid_terms``: the
per-point constants (~1,500 nats) differ by up to ~7e-4 nats (float32 rounding).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# supports: this module decodes exactly the models fast_evaluation evaluates
from vae_model.fast_evaluation import softplus_sum, supports, units_on  # noqa: F401

GROUP = 512  # points per pruned product (256-1024 measured alike; fewer: more units left out)


@tf.function(jit_compile=True)
def _hidden(layers, z):
    """The last hidden layer [units, points] (column layout: its rows can be gathered)."""
    hidden = tf.transpose(z)
    for kernel, bias in layers:
        hidden = tf.nn.relu(tf.matmul(kernel, hidden, transpose_a=True) + bias[:, None])
    return hidden


@tf.function(jit_compile=True)
def _empty_log_prob(logits_without_bias, bias):
    """log p(0|z) = -Σ softplus(l) of Bernoulli pixels, per column of [784, points]."""
    return -softplus_sum(logits_without_bias + bias[:, None])


@tf.function(autograph=False)
def _grid_terms(layers, kernel, bias, z):
    features, constant = [], []
    for start in range(0, z.shape[0], GROUP):
        hidden = _hidden(layers, z[start:start + GROUP])
        on = units_on(hidden)
        logits = tf.matmul(tf.gather(kernel, on), tf.gather(hidden, on), transpose_a=True)
        constant.append(_empty_log_prob(logits, bias))
        features.append(tf.transpose(hidden))
    # log N(z; 0, I) in two dimensions, the model's prior
    prior = -0.5 * tf.reduce_sum(tf.square(z), 1) - np.log(2.0 * np.pi)
    return tf.concat(features, 0), tf.concat(constant, 0) + prior


def grid_terms(model):
    """For a model ``supports`` accepts, with a 2-D latent: a function of z (float32
    [n, 2], n a multiple of GROUP) returning f(z) [n, 256] and log p(0|z) + log p(z) [n] as
    numpy arrays, what ``reference._grid_terms(model, z, split=True)`` returns."""
    weights = [tf.convert_to_tensor(v) for v in model.decoder.trainable_variables]
    layers = list(zip(weights[:-2:2], weights[1:-2:2]))
    kernel, bias = weights[-2], weights[-1]
    return lambda z: [t.numpy() for t in _grid_terms(layers, kernel, bias, tf.constant(z))]

