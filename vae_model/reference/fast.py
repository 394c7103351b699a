"""Decoding lattice points for :mod:`.quadrature`, for the MLP with Bernoulli pixels: the same
per-point terms as ``quadrature._grid_terms`` (the last hidden layer f(z), and log p(0|z) +
log p(z)), written for speed, since decoding is most of the reference NLL's work.

Groups of nearby points (the cache decodes new points in Z-order) leave out of the last product
the hidden units none of them turns on (exact: those are zero); log p(0|z) takes 8 logarithms
instead of 784; the layers of fixed shape are XLA-compiled, the pruned product is not. The sum
over pixels runs in another order than XLA's, so per-point constants differ by float32 rounding
(``tests/test_reference_fast.py``). What each choice bought: ``docs/performance.md``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vae_model.model.fast_math import softplus_sum, units_on

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

