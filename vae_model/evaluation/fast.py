"""Evaluation kernels of the MLP VAE with Bernoulli pixels: the same three functions as
:mod:`.plain` (the reference), written for speed.

Functions of the weights, not of a Keras model, run eagerly or as graphs traced once per shape
(no XLA compilation per model). IWAE takes its log weights from the logits (x·l read off the
last hidden layer, Σ softplus(l) with 8 logarithms instead of 784) and leaves out of the last
product the hidden units that none of a group of nearby images' draws turns on (exact: those
are zero). The gradient variance writes backpropagation out for a group of draws at once and
takes the moments from Gram matrices, in float64. Draws are TFP's own outside XLA, so given a
seed these return what the plain kernels return for a model run without XLA, to float rounding
(``tests/test_evaluation_fast.py``). What each choice bought: ``docs/performance.md``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vae_model.model.fast_math import (dense_stack, negative_elbo_terms, softplus_sum,
                                       standard_normal, units_on)

GROUP_ROWS = 800  # IWAE's decoded images per group (8 images x 100 draws; 1600 measured alike)
DRAW_ROWS = 8192  # draws x batch rows per group of the gradient variance (~100 MB at most)


def _weights(model):
    """The encoder's and the decoder's (kernel, bias, ...) as tensors."""
    return ([tf.convert_to_tensor(v) for v in model.encoder.trainable_variables],
            [tf.convert_to_tensor(v) for v in model.decoder.trainable_variables])


def _flat_images(images) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    return tf.reshape(tf.cast(images, tf.float32), [images.shape[0], -1]) / 255.0


def elbo_terms(model, batches: list[np.ndarray], seeds) -> tuple[np.ndarray, np.ndarray]:
    """Per image (analytic KL, -log p(x|z)) for the uint8 images of batches[i], drawn with
    seeds[i]: eager, as that is only ~30 operations per batch."""
    encoder, decoder = _weights(model)
    latent = model.latent_size
    kl, reconstruction = [], []
    for batch, seed in zip(batches, seeds):
        x = _flat_images(batch)
        eps = standard_normal(seed, 1, x.shape[0], latent)[0]
        terms = negative_elbo_terms(encoder + decoder, x, tf.constant(False), eps)
        kl.append(terms[0].numpy()), reconstruction.append(terms[1].numpy())
    return np.concatenate(kl), np.concatenate(reconstruction)


def _layers(weights):
    return list(zip(weights[0::2], weights[1::2]))


def _neighbour_order(loc: tf.Tensor, group: int) -> tf.Tensor:
    """A permutation of the images that puts ones with nearby posterior means next to each
    other: equal-count columns along the first latent coordinate, each run along the second
    (alternately up and down), so that ``group`` consecutive images cover a small patch."""
    batch = loc.shape[0]
    rank = tf.argsort(tf.argsort(loc[:, :2], axis=0), axis=0)  # per coordinate, 0..B-1
    column = rank[:, 0] * max(1, round((batch / group) ** 0.5)) // batch
    along = tf.where(column % 2 == 0, rank[:, -1], batch - 1 - rank[:, -1])
    return tf.argsort(column * batch + along)


@tf.function(autograph=False)  # loops as map_fn: tracing took 0.8 s with autograph, 0.1 without
def _iwae_log_sums(encoder, decoder, images, seeds, samples, group):
    """For one batch of uint8 images and seeds[c] per chunk of ``samples`` draws: per chunk
    and image, logsumexp over the draws of log p(x|z) + log p(z) - log q(z|x); [chunks, B].
    The draws of ``group`` images at a time (of nearby posterior means) go through the last
    product together, with only the last hidden layer's units that any of them turns on."""
    x = _flat_images(images)
    batch, latent = x.shape[0], encoder[-1].shape[-1] // 2
    loc, log_scale = tf.split(dense_stack(x, encoder), 2, axis=-1)
    groups = -(-batch // group)
    order = _neighbour_order(loc, group)
    order = tf.concat([order, tf.fill([groups * group - batch], order[-1])], 0)  # padded

    def by_group(values):  # [B, ...] in ``order``, as [groups, ..., group]: images last
        values = tf.gather(values, order)
        values = tf.reshape(values, tf.concat([[groups, group], tf.shape(values)[1:]], 0))
        return tf.transpose(values, tf.concat([[0], tf.range(2, tf.rank(values)), [1]], 0))

    # Column layout inside the loop ([units, rows], weights transposed once here): the last
    # hidden layer's rows can then be gathered, and no transpose runs per group (each of
    # TensorFlow's costs ~0.3 ms however small).
    layers = [(tf.transpose(kernel), bias[:, None]) for kernel, bias in _layers(decoder[:-2])]
    kernel, bias = decoder[-2], decoder[-1][:, None]
    # per image: x·l = h·(x Wᵀ) + x·b, and the Gaussian terms' constant part
    image_terms = [by_group(t) for t in (
        loc, tf.exp(log_scale), tf.matmul(x, kernel, transpose_b=True),
        tf.linalg.matvec(x, decoder[-1]) + tf.reduce_sum(log_scale, -1))]

    def group_log_weights(args):  # one group's images and draws eps [latent, group, samples]
        (loc, scale, x_kernel, constant), eps = args[:4], args[4]
        z = loc[:, :, None] + scale[:, :, None] * eps
        hidden = tf.reshape(z, [latent, -1])
        for kernel_t, bias_t in layers:
            hidden = tf.nn.relu(tf.matmul(kernel_t, hidden) + bias_t)
        on = units_on(hidden)
        hidden = tf.gather(hidden, on)
        logits = tf.matmul(tf.gather(kernel, on), hidden, transpose_a=True) + bias
        x_dot_logits = tf.reduce_sum(tf.reshape(hidden, [-1, group, samples])
                                     * tf.gather(x_kernel, on)[:, :, None], 0)
        log_likelihood = x_dot_logits - tf.reshape(softplus_sum(logits), [group, samples])
        # log p(z) - log q(z|x): the 2π constants cancel and (z - loc) / scale is eps
        return tf.reduce_logsumexp(log_likelihood + constant[:, None] + 0.5 * tf.reduce_sum(
            tf.square(eps) - tf.square(z), 0), -1)

    def chunk_log_sum(seed):
        eps = tf.gather(standard_normal(seed, samples, batch, latent), order, axis=1)
        eps = tf.transpose(tf.reshape(eps, [samples, groups, group, latent]), [1, 3, 2, 0])
        sums = tf.map_fn(group_log_weights, tuple(image_terms) + (eps,),
                         fn_output_signature=tf.float32, parallel_iterations=1)
        return tf.scatter_nd(order[:batch, None], tf.reshape(sums, [-1])[:batch], [batch])

    return tf.map_fn(chunk_log_sum, seeds, fn_output_signature=tf.float32,
                     parallel_iterations=1)


def iwae_log_sums(model, images: np.ndarray, seeds: np.ndarray, samples: int) -> np.ndarray:
    """[chunks, images]: per chunk of ``samples`` draws made with seeds[c], the logsumexp of
    the images' log weights (float32, as the plain ``_log_mean_weight_terms``)."""
    encoder, decoder = _weights(model)
    group = max(1, min(len(images), GROUP_ROWS // samples))
    return _iwae_log_sums(encoder, decoder, tf.constant(images), tf.constant(seeds), samples,
                          group).numpy()


def _forward(h, layers):
    """``dense_stack`` keeping each layer's input, for the backward pass."""
    inputs = []
    for i, (kernel, bias) in enumerate(layers):
        inputs.append(h)
        h = tf.matmul(h, kernel) + bias
        if i < len(layers) - 1:
            h = tf.nn.relu(h)
    return inputs, h


def _backward(inputs, layers, delta, input_cotangent=True):
    """Backpropagates cotangents ``delta`` [draws, B, out] from the output of ``_forward``;
    returns each layer's output cotangent (the layer's weight gradients are
    ``input_i^T delta_i`` and ``Σ_B delta_i``) and, if asked, the input's cotangent."""
    deltas = [None] * len(layers)
    for i in reversed(range(len(layers))):
        deltas[i] = delta
        if i == 0 and not input_cotangent:
            return deltas, None
        delta = tf.matmul(delta, layers[i][0], transpose_b=True)
        if i > 0:  # ReLU's gradient, as TensorFlow's: zero where the output is not positive
            delta = tf.where(inputs[i] > 0, delta, tf.zeros_like(delta))
    return deltas, delta


def _gram(a: tf.Tensor) -> tf.Tensor:
    return tf.matmul(a, a, transpose_b=True)


def _moments(inputs, deltas):
    """For the weight gradients g_d of draws d (input_i^T delta_i and Σ_B delta_i per layer),
    in float64: Σ_d |g_d|², and Σ_d g_d per weight. |h^T δ|² = <h h^T, δ δ^T> (B x B Gram
    matrices), so the per-draw gradients are never formed; an input without the draw axis
    is shared by every draw (the encoder's)."""
    sum_of_squares, sums = tf.constant(0.0, tf.float64), []
    for h, delta in zip(inputs, deltas):
        h, delta = tf.cast(h, tf.float64), tf.cast(delta, tf.float64)
        bias_gradients = tf.reduce_sum(delta, -2)  # [draws, out]
        sum_of_squares += tf.reduce_sum(_gram(h) * _gram(delta)) + tf.reduce_sum(
            tf.square(bias_gradients))
        if h.shape.rank == 2:
            kernel_sum = tf.matmul(h, tf.reduce_sum(delta, 0), transpose_a=True)
        else:
            kernel_sum = tf.matmul(tf.reshape(h, [-1, h.shape[-1]]),
                                   tf.reshape(delta, [-1, delta.shape[-1]]), transpose_a=True)
        sums += [kernel_sum, tf.reduce_sum(bias_gradients, 0)]
    return sum_of_squares, sums


def _draw_moments(encoder, decoder, x, monte_carlo: bool, eps):
    """``_moments`` of the gradients of the batch's mean -ELBO and of its mean KL term, for
    the draws eps [draws, B, latent], with backpropagation written out for all of them."""
    batch = float(x.shape[0])
    # the encoder does not depend on the draw (it is recomputed per group: ~1% of the work)
    encoder_inputs, params = _forward(x, encoder)
    loc, log_scale = tf.split(params, 2, axis=-1)
    scale = tf.exp(log_scale)
    z = loc + scale * eps
    decoder_inputs, logits = _forward(z, decoder)
    # d/dlogits of the batch's mean Σ sigmoid_cross_entropy(x, logits)
    decoder_deltas, dz = _backward(decoder_inputs, decoder, (tf.sigmoid(logits) - x) / batch)
    if monte_carlo:  # KL = Σ z²/2 - eps²/2 - log σ, with z = μ + σ eps
        kl_loc, kl_log_scale = z / batch, (z * eps * scale - 1.0) / batch
    else:  # KL = Σ (μ² + σ² - 1)/2 - log σ: the same for every draw
        kl_loc = tf.broadcast_to(loc / batch, tf.shape(z))
        kl_log_scale = tf.broadcast_to((tf.square(scale) - 1.0) / batch, tf.shape(z))
    kl_cotangent = tf.concat([kl_loc, kl_log_scale], -1)
    loss_cotangent = kl_cotangent + tf.concat([dz, dz * eps * scale], -1)
    loss_deltas, _ = _backward(encoder_inputs, encoder, loss_cotangent, False)
    kl_deltas, _ = _backward(encoder_inputs, encoder, kl_cotangent, False)
    encoder_squares, encoder_sums = _moments(encoder_inputs, loss_deltas)
    decoder_squares, decoder_sums = _moments(decoder_inputs, decoder_deltas)
    # the KL term does not depend on the decoder: its decoder gradients are zero
    return (encoder_squares + decoder_squares, encoder_sums + decoder_sums), _moments(
        encoder_inputs, kl_deltas)


def gradient_moments(model, images: np.ndarray, estimator: str, seeds: np.ndarray):
    """The plain ``_gradient_moments``: over draws eps_d made with seeds[d], the summed
    variance (unbiased) of the gradient of the batch's mean -ELBO and of its KL term's, and
    the squared norm of the mean gradient; draws are taken in groups of ~DRAW_ROWS rows."""
    x = _flat_images(images)
    encoder, decoder = (_layers(w) for w in _weights(model))
    # [draws, B, latent]: per draw the draw behind q.sample(seed=seeds[d])
    eps = tf.stack([standard_normal(seed, 1, x.shape[0], model.latent_size)[0]
                    for seed in seeds])
    group = max(1, DRAW_ROWS // x.shape[0])
    totals = None  # (Σ_d |g_d|², Σ_d g_d) for the loss and for the KL term
    for start in range(0, len(seeds), group):
        moments = _draw_moments(encoder, decoder, x, estimator == "monte_carlo",
                                eps[start:start + group])
        totals = moments if totals is None else [
            (squares + more_squares, [a + b for a, b in zip(sums, more_sums)])
            for (squares, sums), (more_squares, more_sums) in zip(totals, moments)]
    draws = float(len(seeds))

    def total_variance(sum_of_squares, sums):  # Σ_d |g_d - mean|² / (draws - 1)
        squared_sum = sum(float(tf.reduce_sum(tf.square(s))) for s in sums)
        return max(float(sum_of_squares) - squared_sum / draws, 0.0) / (draws - 1.0)

    (loss_squares, loss_sums), kl = totals
    return (total_variance(loss_squares, loss_sums), total_variance(*kl),
            sum(float(tf.reduce_sum(tf.square(s))) for s in loss_sums) / draws**2)
