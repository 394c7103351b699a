"""The seed notebook's networks as distributions: shapes, layer sizes, and the continuous
Bernoulli's normalised density."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from vae_model.model.config import ModelConfig
from vae_model.model.networks import VAE

tfd = tfp.distributions


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("latent_size", [2, 5])
def test_encoder_and_decoder_are_distributions_of_the_right_shape(architecture, latent_size):
    model = VAE(ModelConfig(architecture=architecture, latent_size=latent_size))
    x = tf.random.uniform([3, 28, 28])
    q = model.encode(x)
    assert isinstance(q, tfd.MultivariateNormalDiag)
    assert q.batch_shape == [3] and q.event_shape == [latent_size]
    p = model.decode(q.sample(seed=[1, 2]))
    assert p.batch_shape == [3] and p.event_shape == [28, 28]
    assert model.decode(tf.zeros([4, 3, latent_size])).batch_shape == [4, 3]
    assert model.prior.event_shape == [latent_size]


def test_seed_architectures_have_the_seed_layer_sizes():
    mlp = VAE(ModelConfig())
    def units(network):
        return [layer.units for layer in network.layers if hasattr(layer, "units")]
    assert units(mlp.encoder) == [256, 128, 64, 32, 4]
    assert units(mlp.decoder) == [32, 64, 128, 256, 784]
    conv = VAE(ModelConfig(architecture="conv"))
    assert [layer.filters for layer in conv.encoder.layers if hasattr(layer, "filters")] == [8, 8]
    assert conv.encoder.layers[1].activation.__name__ == "tanh"  # the seed's typo'd layer


def test_continuous_bernoulli_is_a_normalised_density_on_grey_pixels():
    grey = tf.fill([1, 28, 28], 0.3)
    models = {name: VAE(ModelConfig(likelihood=name)) for name in ("bernoulli",
                                                                    "continuous_bernoulli")}
    for model in models.values():  # logits 0 on every pixel
        last = model.decoder.layers[-2]
        last.kernel.assign(tf.zeros_like(last.kernel)), last.bias.assign(tf.zeros_like(last.bias))
    cb = models["continuous_bernoulli"].decode(tf.zeros([1, 2]))
    assert isinstance(cb.distribution, tfd.ContinuousBernoulli)
    # CB with logits 0 is the uniform density on [0, 1]: log p = 0 for any grey image, while
    # the Bernoulli "likelihood" of a grey image is not a normalised density at all.
    assert float(cb.log_prob(grey)[0]) == pytest.approx(0.0, abs=1e-3)
    bernoulli = models["bernoulli"].decode(tf.zeros([1, 2]))
    assert float(bernoulli.log_prob(grey)[0]) == pytest.approx(-784 * np.log(2), rel=1e-4)
