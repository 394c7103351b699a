"""The fast training step of the MLP VAE with Bernoulli pixels: the same math as
:meth:`vae_model.training.loop.Trainer._step` (the reference, kept beside it), written for speed.

Weights and Adam's moments go through a chunk's loop as tensors (read from the Keras variables
once at its start, written back once at its end, so checkpoints and resuming see what the
reference step leaves), Adam's update is the same expressions fused per weight, the
distributions are written out (:mod:`vae_model.model.fast_math`), and one compiled program serves
every model and chunk: weights and constants are arguments, and a short chunk is padded.
Given the same seed, losses and updates equal the reference's to float rounding
(``tests/test_fast_step.py``). What each choice bought: ``docs/performance.md``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vae_model.model.fast_math import negative_elbo_terms, standard_normal


def adam_constants(optimizer) -> tf.Tensor:
    """Keras Adam's constants as one tensor: an argument of the compiled chunk, not constants
    baked into it, so one compiled program serves every model. ``1 - beta`` is rounded from
    float64 as Keras rounds it (1 - float32(0.999) differs from it by 1e-5, relatively)."""
    beta_1, beta_2 = float(optimizer.beta_1), float(optimizer.beta_2)
    return tf.constant([beta_1, beta_2, float(optimizer.epsilon), 1 - beta_1, 1 - beta_2],
                       tf.float32)


def adam_update(theta, m, v, gradient, step, learning_rate, adam: tf.Tensor):
    """One Adam step exactly as tf_keras computes it (same expressions, same order), over one
    weight tensor; ``step`` counts from 1, ``adam`` is :func:`adam_constants`."""
    beta_1, beta_2, epsilon, one_minus_beta_1, one_minus_beta_2 = tf.unstack(adam)
    step = tf.cast(step, tf.float32)
    alpha = learning_rate * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
    m = m + (gradient - m) * one_minus_beta_1
    v = v + (tf.square(gradient) - v) * one_minus_beta_2
    theta = theta - (m * alpha) / (tf.sqrt(v) + epsilon)
    return theta, m, v


def loss_and_gradient(weights: list[tf.Tensor], images: tf.Tensor, monte_carlo, eps):
    """Mean -ELBO of a uint8 batch (per model when stacked) and its gradient, one tensor per
    weight."""
    x = tf.cast(tf.reshape(images, tf.concat([tf.shape(images)[:-2], [-1]], 0)),
                tf.float32) / 255.0
    with tf.GradientTape() as tape:
        tape.watch(weights)
        kl, reconstruction = negative_elbo_terms(weights, x, monte_carlo, eps)
        losses = tf.reduce_mean(kl + reconstruction, -1)
        total = tf.reduce_sum(losses)  # models are independent: each gets its own gradient
    return losses, tape.gradient(total, weights)


def adam_updates(weights, momentums, velocities, gradients, step, learning_rate,
                 adam: tf.Tensor):
    """``adam_update`` for every weight tensor; returns the new (weights, momentums,
    velocities) lists."""
    updated = [adam_update(w, m, v, g, step, learning_rate, adam)
               for w, m, v, g in zip(weights, momentums, velocities, gradients)]
    return tuple([u[i] for u in updated] for i in range(3))


@tf.function(jit_compile=True)
def train_chunk(weights, momentums, velocities, first_step, learning_rate, adam, monte_carlo,
                batches, seeds, steps):
    """Fast steps over the first ``steps`` of batches[i] with seeds[i], in order, from Adam step
    ``first_step``: returns the losses (zero past ``steps``) and the new (weights, momentums,
    velocities). Model state comes in and goes out as tensors, and the step count is an
    argument, so this is compiled once per chunk shape and serves every model of a run and
    every chunk of an epoch (XLA takes seconds to compile it)."""
    latent_size = weights[len(weights) // 2 - 1].shape[-1] // 2  # the encoder's last layer
    batch = batches.shape[1]

    def step(i, losses, weights, momentums, velocities):
        eps = standard_normal(seeds[i], 1, batch, latent_size)[0]
        loss, gradients = loss_and_gradient(weights, batches[i], monte_carlo, eps)
        weights, momentums, velocities = adam_updates(
            weights, momentums, velocities, gradients, first_step + tf.cast(i, tf.int64),
            learning_rate, adam)
        return i + 1, tf.tensor_scatter_nd_update(losses, [[i]], [loss]), weights, momentums, \
            velocities

    # Tensors, not variables, through the loop: XLA updates them in place, and each weight's
    # Adam update is one fused pass over it. An explicit loop whose bound is the (static) chunk
    # length: autograph's ``for i in tf.range(steps)`` makes ``steps`` a compile-time constant.
    _, losses, weights, momentums, velocities = tf.while_loop(
        lambda i, *_: i < steps, step,
        (tf.constant(0), tf.zeros([batches.shape[0]]), weights, momentums, velocities),
        maximum_iterations=batches.shape[0])
    return losses, weights, momentums, velocities


class FastTrainer:
    """Runs chunks of fast steps for a :class:`vae_model.training.loop.Trainer`, whose model and
    optimizer hold the state between chunks (so its checkpoints are unchanged). Chunks shorter
    than ``steps_per_chunk`` are padded to it: one compiled shape (see :func:`train_chunk`)."""

    def __init__(self, trainer, steps_per_chunk: int = 250):
        self.trainer, self.steps_per_chunk = trainer, steps_per_chunk
        optimizer = trainer.optimizer
        self.state = (trainer.model.variables_to_train, optimizer._momentums,
                      optimizer._velocities)
        self.adam = adam_constants(optimizer)
        self.monte_carlo = tf.constant(trainer.config.estimator == "monte_carlo")

    def run_steps(self, batches, seeds) -> tf.Tensor:
        """The reference ``Trainer.run_steps``: steps over batches[i] with seeds[i], in order;
        returns every step's loss and leaves weights and Adam's state in the Keras variables."""
        optimizer = self.trainer.optimizer
        steps = len(batches)
        batches, seeds = (_padded(np.asarray(a), self.steps_per_chunk) for a in (batches, seeds))
        losses, *updated = train_chunk(
            *([v.read_value() for v in group] for group in self.state),
            optimizer.iterations + 1, tf.cast(optimizer.learning_rate, tf.float32), self.adam,
            self.monte_carlo, tf.convert_to_tensor(batches), tf.convert_to_tensor(seeds),
            tf.constant(steps))
        for group, values in zip(self.state, updated):
            for variable, value in zip(group, values):
                variable.assign(value)
        optimizer.iterations.assign_add(steps)
        return losses[:steps]


def _padded(array: np.ndarray, length: int) -> np.ndarray:
    """``array`` with zeros appended along its first axis up to ``length`` (if shorter)."""
    if len(array) >= length:
        return array
    return np.concatenate([array, np.zeros((length - len(array),) + array.shape[1:],
                                           array.dtype)])
