"""The two -ELBO objectives: the Monte-Carlo KL averages to the analytic one, and they differ
only in the KL term."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from vae_model.model.config import ModelConfig
from vae_model.model.networks import VAE
from vae_model.model.objectives import (analytic_kl, monte_carlo_kl, negative_elbo,
                                        negative_elbo_terms)

tfd = tfp.distributions


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
