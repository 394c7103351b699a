import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from vae_model.model.config import ModelConfig
from vae_model.model.networks import VAE
from vae_model.model.objectives import (analytic_kl, monte_carlo_kl, negative_elbo,
                                        negative_elbo_terms)

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


def test_monte_carlo_kl_averages_to_the_analytic_kl():
    q = tfd.MultivariateNormalDiag(loc=[[0.5, -1.0], [2.0, 0.1]],
                                   scale_diag=[[0.3, 1.5], [0.8, 0.2]])
    prior = tfd.MultivariateNormalDiag(loc=tf.zeros(2))
    z = q.sample(200_000, seed=[3, 4])
    estimate = tf.reduce_mean(monte_carlo_kl(q, prior, z), axis=0).numpy()
    exact = analytic_kl(q, prior, None).numpy()
    # closed form for diagonal Gaussians against N(0, I)
    mu, s = np.array([[0.5, -1.0], [2.0, 0.1]]), np.array([[0.3, 1.5], [0.8, 0.2]])
    by_hand = 0.5 * np.sum(s**2 + mu**2 - 1 - np.log(s**2), axis=1)
    np.testing.assert_allclose(exact, by_hand, rtol=1e-5)
    np.testing.assert_allclose(estimate, exact, rtol=0.02)


def test_both_objectives_share_the_reconstruction_term_and_differ_only_in_kl():
    model = VAE(ModelConfig())
    x = tf.cast(tf.random.uniform([8, 28, 28]) > 0.5, tf.float32)
    kl_a, rec_a = negative_elbo_terms(model, x, "analytic", tf.constant([5, 6]))
    kl_m, rec_m = negative_elbo_terms(model, x, "monte_carlo", tf.constant([5, 6]))
    np.testing.assert_allclose(rec_a, rec_m)
    assert not np.allclose(kl_a, kl_m)
    loss = negative_elbo(model, x, "analytic", tf.constant([5, 6]))
    assert float(loss) == pytest.approx(float(tf.reduce_mean(kl_a + rec_a)))
    # an untrained decoder puts ~ log 2 nats on each of the 784 binary pixels
    assert 784 * np.log(2) * 0.8 < float(tf.reduce_mean(rec_a)) < 784 * np.log(2) * 1.2


ALLOCATOR_PROBE = """
import os, vae_model, tensorflow as tf
print(os.environ["TF_CPU_ALLOCATOR_USE_BFC"])
tf.matmul(tf.ones([512, 512]), tf.ones([512, 512]))
print(tf.config.experimental.get_memory_info("CPU:0")["peak"] > 0)
"""


def _allocator_probe(setting):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    if setting is not None:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = setting
    code = ALLOCATOR_PROBE if setting is None else ALLOCATOR_PROBE.split("tf.matmul")[0]
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.split()


def test_importing_vae_model_pools_tensorflows_cpu_memory():
    # the default allocator faulted fresh memory in on every large tensor; BFC keeps and reuses it
    assert _allocator_probe(None) == ["true", "True"]


@pytest.mark.parametrize("setting", ["false", "true", "0"])
def test_a_users_allocator_setting_is_kept(setting):
    # only the setting is the project's to keep: how TensorFlow's other allocator reports
    # its memory varies by processor
    assert _allocator_probe(setting) == [setting]
