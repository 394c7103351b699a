"""The MLP with Bernoulli pixels written out as tensor maths, for the fast paths of training
(:mod:`vae_model.training.fast_step`), evaluation (:mod:`vae_model.evaluation.fast`) and the
reference NLL (:mod:`vae_model.reference.fast`): the one rule for which models take them, and
the kernels they share. The Keras model with TFP distributions (:mod:`.networks`,
:mod:`.objectives`) is the reference; the tests show both give the same numbers.
"""

from __future__ import annotations

import tensorflow as tf

PIXEL_GROUPS = 8  # 784 = 8 x 98 pixels per product: terms in (1, 2], products < 2^98


def supports(model) -> bool:
    """Whether a model (or its :class:`~vae_model.model.config.ModelConfig`) takes the fast
    paths: the seed's MLP of ReLU layers with linear outputs and Bernoulli pixels."""
    return model.architecture == "mlp" and model.likelihood == "bernoulli"


def dense_stack(h: tf.Tensor, weights: list[tf.Tensor]) -> tf.Tensor:
    """ReLU layers with a linear last layer, as in ``networks.mlp_networks``; ``weights`` are
    (kernel, bias) pairs, optionally with a leading model axis (then products are batched)."""
    pairs = list(zip(weights[0::2], weights[1::2]))
    for i, (kernel, bias) in enumerate(pairs):
        h = tf.matmul(h, kernel) + tf.expand_dims(bias, -2)
        if i < len(pairs) - 1:
            h = tf.nn.relu(h)
    return h


def standard_normal(seed, samples: int, batch: int, latent: int) -> tf.Tensor:
    """The ``[samples, batch, latent]`` draw behind TFP 0.25's
    ``MultivariateNormalDiag.sample(samples, seed=seed)`` outside XLA: a
    ``[samples * latent, batch]`` stateless draw, reshaped and transposed."""
    noise = tf.random.stateless_normal([samples * latent, batch], seed=seed)
    return tf.transpose(tf.reshape(noise, [samples, latent, batch]), [0, 2, 1])


def negative_elbo_terms(weights: list[tf.Tensor], x: tf.Tensor, monte_carlo: tf.Tensor,
                        eps: tf.Tensor):
    """Per-image (KL estimate, -log p(x|z)) for flat images ``x`` in [0, 1] and a
    standard-normal draw ``eps``; ``monte_carlo`` (a bool, per model when stacked) picks the
    single-sample KL estimate instead of the closed form, as ``objectives.KL_ESTIMATORS``."""
    n_encoder = len(weights) // 2
    params = dense_stack(x, weights[:n_encoder])
    loc, log_scale = tf.split(params, 2, axis=-1)
    scale = tf.exp(log_scale)
    z = loc + scale * eps
    logits = dense_stack(z, weights[n_encoder:])
    reconstruction = tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), -1)
    analytic = 0.5 * tf.reduce_sum(tf.square(loc) + tf.square(scale) - 1.0, -1) - tf.reduce_sum(
        log_scale, -1)
    # log q(z|x) - log p(z); the 2*pi constants cancel, and (z - loc) / scale is eps exactly.
    sampled = tf.reduce_sum(0.5 * tf.square(z) - 0.5 * tf.square(eps) - log_scale, -1)
    monte_carlo = tf.reshape(monte_carlo, tf.concat([tf.shape(monte_carlo), [1]], 0))
    return tf.where(monte_carlo, sampled, analytic), reconstruction


def units_on(hidden: tf.Tensor) -> tf.Tensor:
    """The rows of a ReLU layer in column layout [units, points] that some point turns on: the
    others add only zeros to the next product, which can leave them out. The first is always
    kept: oneDNN aborts on a product of width zero."""
    return tf.where(tf.concat([[True], tf.reduce_any(hidden[1:] > 0, 1)], 0))[:, 0]


def softplus_sum(logits: tf.Tensor) -> tf.Tensor:
    """Σ softplus over the first axis (784 pixels), with 8 logarithms instead of 784."""
    terms = 1.0 + tf.exp(-tf.abs(logits))
    products = tf.reduce_prod(tf.reshape(terms, [PIXEL_GROUPS, -1, tf.shape(logits)[1]]), 1)
    return tf.reduce_sum(tf.nn.relu(logits), 0) + tf.reduce_sum(tf.math.log(products), 0)
