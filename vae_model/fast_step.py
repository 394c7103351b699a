"""The fast training step of the MLP VAE with Bernoulli pixels: the same math as
:meth:`vae_model.training.Trainer._step` (the reference, kept beside it), written for speed.

What makes it faster, measured in one process by ``benchmarks/train_throughput.py``:

- **Weights and Adam's moments carried through the chunk's loop as tensors.** The Keras
  variables and optimizer slots are read once at the start of a chunk and written once at its
  end (so checkpoints, evaluation and resuming see exactly what the reference step leaves
  behind); in between XLA updates the tensors in place and fuses each weight's Adam update
  (moments and weight) into one element-wise pass. One flat parameter vector was measured too
  and was slower: XLA copies every slice of it into a separate buffer before each product and
  concatenates the gradients back, ~6 MB of copies per step.
- **The distributions written out.** The encoder and decoder are plain matrix products, the
  Bernoulli log-probability is computed once from the logits (``sigmoid_cross_entropy``), the
  KL terms in closed form: no TFP objects, linear operators or bijectors in the step.
- **A leading model axis.** The functions here also take weights stacked over M models
  (``[M, ...]``: batched products), for training several models in one program.

``z = loc + scale * eps`` uses the same standard-normal draw as ``q.sample(seed=seed)`` does in
TFP 0.25 (a ``[latent, batch]`` stateless draw, transposed), so given the same seed the fast
step's losses and updates equal the reference's to float rounding (``tests/test_fast_step.py``).
"""

from __future__ import annotations

import tensorflow as tf


def supports(config) -> bool:
    """Whether ``config``'s model has a fast step (else the reference step trains it)."""
    return config.architecture == "mlp" and config.likelihood == "bernoulli"


def _dense_stack(h: tf.Tensor, weights: list[tf.Tensor]) -> tf.Tensor:
    """ReLU layers with a linear last layer, as in ``networks.mlp_networks``; ``weights`` are
    (kernel, bias) pairs, optionally with a leading model axis (then products are batched)."""
    pairs = list(zip(weights[0::2], weights[1::2]))
    for i, (kernel, bias) in enumerate(pairs):
        h = tf.matmul(h, kernel) + tf.expand_dims(bias, -2)
        if i < len(pairs) - 1:
            h = tf.nn.relu(h)
    return h


def standard_normal(seed: tf.Tensor, batch: int, latent: int) -> tf.Tensor:
    """The ``[batch, latent]`` draw behind TFP's ``MultivariateNormalDiag.sample(seed=seed)``."""
    return tf.transpose(tf.random.stateless_normal([latent, batch], seed=seed))


def negative_elbo_terms(weights: list[tf.Tensor], x: tf.Tensor, monte_carlo: tf.Tensor,
                        eps: tf.Tensor):
    """Per-image (KL estimate, -log p(x|z)) for flat images ``x`` in [0, 1] and a
    standard-normal draw ``eps``; ``monte_carlo`` (a bool, per model when stacked) picks the
    single-sample KL estimate instead of the closed form, as ``objectives.KL_ESTIMATORS``."""
    n_encoder = len(weights) // 2
    params = _dense_stack(x, weights[:n_encoder])
    loc, log_scale = tf.split(params, 2, axis=-1)
    scale = tf.exp(log_scale)
    z = loc + scale * eps
    logits = _dense_stack(z, weights[n_encoder:])
    reconstruction = tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), -1)
    analytic = 0.5 * tf.reduce_sum(tf.square(loc) + tf.square(scale) - 1.0, -1) - tf.reduce_sum(
        log_scale, -1)
    # log q(z|x) - log p(z); the 2*pi constants cancel, and (z - loc) / scale is eps exactly.
    sampled = tf.reduce_sum(0.5 * tf.square(z) - 0.5 * tf.square(eps) - log_scale, -1)
    monte_carlo = tf.reshape(monte_carlo, tf.concat([tf.shape(monte_carlo), [1]], 0))
    return tf.where(monte_carlo, sampled, analytic), reconstruction


class AdamSettings:
    """Keras Adam's constants (tf_keras 2.x defaults unless the optimizer says otherwise)."""

    def __init__(self, optimizer):
        self.beta_1, self.beta_2 = float(optimizer.beta_1), float(optimizer.beta_2)
        self.epsilon = float(optimizer.epsilon)


def adam_update(theta, m, v, gradient, step, learning_rate, adam: AdamSettings):
    """One Adam step exactly as tf_keras computes it (same expressions, same order), over the
    whole flat vector at once; ``step`` counts from 1, ``learning_rate`` broadcasts over rows."""
    step = tf.cast(step, tf.float32)
    alpha = (learning_rate * tf.sqrt(1 - tf.pow(adam.beta_2, step))
             / (1 - tf.pow(adam.beta_1, step)))
    m = m + (gradient - m) * (1 - adam.beta_1)
    v = v + (tf.square(gradient) - v) * (1 - adam.beta_2)
    theta = theta - (m * alpha) / (tf.sqrt(v) + adam.epsilon)
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
                 adam: AdamSettings):
    """``adam_update`` for every weight tensor; returns the new (weights, momentums,
    velocities) lists."""
    updated = [adam_update(w, m, v, g, step, learning_rate, adam)
               for w, m, v, g in zip(weights, momentums, velocities, gradients)]
    return tuple([u[i] for u in updated] for i in range(3))


class FastTrainer:
    """Runs chunks of fast steps for a :class:`vae_model.training.Trainer`, whose model and
    optimizer hold the state between chunks (so its checkpoints are unchanged)."""

    def __init__(self, trainer):
        self.trainer = trainer
        optimizer = trainer.optimizer
        self.state = (trainer.model.variables_to_train, optimizer._momentums,
                      optimizer._velocities)
        self.adam = AdamSettings(optimizer)
        self.monte_carlo = tf.constant(trainer.config.estimator == "monte_carlo")
        self.latent_size = trainer.config.latent_size
        self.run_steps = tf.function(self._run_steps, jit_compile=True)

    def _run_steps(self, batches: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
        """The reference ``Trainer.run_steps``: steps over batches[i] with seeds[i], in order;
        returns every step's loss and leaves weights and Adam's state in the Keras variables."""
        optimizer = self.trainer.optimizer
        # Tensors, not variables, through the loop: XLA updates them in place, and each
        # weight's Adam update is one fused pass over it.
        weights, momentums, velocities = ([tf.identity(v) for v in group] for group in self.state)
        first_step = optimizer.iterations + 1
        learning_rate = tf.cast(optimizer.learning_rate, tf.float32)
        steps, batch = tf.shape(batches)[0], batches.shape[1]
        losses = tf.TensorArray(tf.float32, size=steps)
        for i in tf.range(steps):
            eps = standard_normal(seeds[i], batch, self.latent_size)
            loss, gradients = loss_and_gradient(weights, batches[i], self.monte_carlo, eps)
            weights, momentums, velocities = adam_updates(
                weights, momentums, velocities, gradients, first_step + tf.cast(i, tf.int64),
                learning_rate, self.adam)
            losses = losses.write(i, loss)
        for group, values in zip(self.state, (weights, momentums, velocities)):
            for variable, value in zip(group, values):
                variable.assign(value)
        optimizer.iterations.assign_add(tf.cast(steps, tf.int64))
        return losses.stack()
