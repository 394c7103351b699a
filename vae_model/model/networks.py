"""Encoder and decoder networks of the seed notebook, and the VAE that turns them into
distributions: ``encode(x)`` is q(z|x), ``decode(z)`` is p(x|z), ``prior`` is p(z) = N(0, I).

The networks output distribution *parameters* and the VAE builds the distributions, instead of
ending in ``tfp.layers``: those layers coerce every output to a tensor by drawing an unseeded
sample (a 64x784 Bernoulli draw per decoder call), which costs time inside the compiled step and
breaks seeded reproducibility.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras

from vae_model.model.config import ModelConfig
from vae_model.model.data import IMAGE_SHAPE

tfd = tfp.distributions
layers = keras.layers


def mlp_networks(latent_size: int) -> tuple[keras.Model, keras.Model]:
    """The seed tutorial's MLP: 784-256-128-64-32 -> 2L, and L-32-64-128-256 -> 784."""
    encoder = keras.Sequential(
        [layers.Flatten(input_shape=IMAGE_SHAPE)]
        + [layers.Dense(units, activation="relu") for units in (256, 128, 64, 32)]
        + [layers.Dense(2 * latent_size)], name="encoder")
    decoder = keras.Sequential(
        [layers.InputLayer(input_shape=(latent_size,))]
        + [layers.Dense(units, activation="relu") for units in (32, 64, 128, 256)]
        + [layers.Dense(IMAGE_SHAPE[0] * IMAGE_SHAPE[1]), layers.Reshape(IMAGE_SHAPE)],
        name="decoder")
    return encoder, decoder


def conv_networks(latent_size: int) -> tuple[keras.Model, keras.Model]:
    """The seed overview's convolutional pair (with its ``activatoin`` typo fixed)."""
    encoder = keras.Sequential([
        layers.Reshape(IMAGE_SHAPE + (1,), input_shape=IMAGE_SHAPE),
        layers.Conv2D(8, (5, 5), strides=2, activation="tanh"),
        layers.Conv2D(8, (5, 5), strides=2, activation="tanh"),
        layers.Flatten(),
        layers.Dense(64, activation="tanh"),
        layers.Dense(2 * latent_size),
    ], name="encoder")
    decoder = keras.Sequential([
        layers.Dense(64, activation="tanh", input_shape=(latent_size,)),
        layers.Dense(128, activation="tanh"),
        layers.Reshape((4, 4, 8)),
        layers.Conv2DTranspose(8, (5, 5), strides=2, output_padding=1, activation="tanh"),
        layers.Conv2DTranspose(8, (5, 5), strides=2, output_padding=1, activation="tanh"),
        layers.Conv2D(1, (3, 3), padding="same"),
        layers.Reshape(IMAGE_SHAPE),
    ], name="decoder")
    return encoder, decoder


ARCHITECTURES = {"mlp": mlp_networks, "conv": conv_networks}
# XLA fuses the MLP's many small ops (~18x the seed loop here), but its CPU convolutions are
# ~4x slower than TensorFlow's oneDNN kernels, so the conv net runs as a plain graph
# (benchmarks/train_throughput.py measures both).
USE_XLA = {"mlp": True, "conv": False}


def compiled_for_model(fn):
    """``fn(model, ...)`` as a tf.function, XLA-compiled where that is faster for the model's
    network (``USE_XLA``)."""
    variants = {True: tf.function(fn, jit_compile=True), False: tf.function(fn)}
    return lambda model, *args: variants[model.use_xla](model, *args)


class VAE(tf.Module):
    def __init__(self, config: ModelConfig):
        super().__init__(name="vae")
        self.latent_size = config.latent_size
        self.architecture = config.architecture
        self.use_xla = USE_XLA[config.architecture]
        self.likelihood = config.likelihood
        self.encoder, self.decoder = ARCHITECTURES[config.architecture](config.latent_size)
        self.prior = tfd.MultivariateNormalDiag(loc=tf.zeros(config.latent_size))

    def encode(self, x) -> tfd.Distribution:
        params = self.encoder(x)
        loc, log_scale = tf.split(params, 2, axis=-1)
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.exp(log_scale))

    def decode(self, z) -> tfd.Distribution:
        """p(x|z) for z of any leading shape (e.g. IWAE's samples x batch)."""
        flat = self.decoder(tf.reshape(z, [-1, self.latent_size]))
        logits = tf.reshape(flat, tf.concat([tf.shape(z)[:-1], IMAGE_SHAPE], 0))
        if self.likelihood == "continuous_bernoulli":
            pixels = tfd.ContinuousBernoulli(logits=logits)
        else:
            pixels = tfd.Bernoulli(logits=logits, dtype=tf.float32)
        return tfd.Independent(pixels, reinterpreted_batch_ndims=2)

    def compile(self, fn):
        """``fn`` as a tf.function, XLA-compiled where that is faster for this network."""
        return tf.function(fn, jit_compile=self.use_xla)

    @property
    def variables_to_train(self) -> list[tf.Variable]:
        return self.encoder.trainable_variables + self.decoder.trainable_variables
