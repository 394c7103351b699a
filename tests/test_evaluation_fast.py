"""The fast path (vae_model.evaluation.fast) against the plain functions it replaces
(vae_model.evaluation.plain) for the MLP with Bernoulli pixels, through the one dispatch in
vae_model.evaluation.heldout."""

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers.data import synthetic_arrays
from vae_model.evaluation import fast as fast_evaluation
from vae_model.evaluation import heldout as evaluation
from vae_model.model import fast_math
from vae_model.model.config import ModelConfig
from vae_model.model.networks import VAE

ARRAYS = synthetic_arrays()

# The fast path draws as TensorFlow does outside XLA, so the plain functions run
# here without XLA (model.use_xla = False): same seed, same draws, same numbers to rounding.


def _plain(monkeypatch, model):
    """Makes the evaluation functions take the plain path, without XLA, for ``model``."""
    monkeypatch.setattr(model, "use_xla", False)
    monkeypatch.setattr(fast_math, "supports", lambda m: False)


def test_fast_heldout_equals_the_plain_one(trained, monkeypatch):
    images = ARRAYS["test_images"]
    fast = evaluation.heldout_per_image(trained, images, seed=3, batch_size=24)
    _plain(monkeypatch, trained)
    plain = evaluation.heldout_per_image(trained, images, seed=3, batch_size=24)
    for name in ("neg_elbo", "kl", "reconstruction"):
        np.testing.assert_allclose(fast[name], plain[name], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("k, batch_size, samples_per_call", [(100, 500, 100), (25, 24, 10)])
def test_fast_iwae_equals_the_plain_one(trained, monkeypatch, k, batch_size, samples_per_call):
    """Including an uneven last batch and a smaller last chunk of draws."""
    images = ARRAYS["test_images"]
    fast = evaluation.iwae_per_image(trained, images, k, 4, batch_size, samples_per_call)
    _plain(monkeypatch, trained)
    plain = evaluation.iwae_per_image(trained, images, k, 4, batch_size, samples_per_call)
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-3)
    assert not np.allclose(fast, evaluation.iwae_per_image(trained, images, k, 5, batch_size,
                                                           samples_per_call))  # seeded


@pytest.mark.parametrize("estimator", ["analytic", "monte_carlo"])
@pytest.mark.parametrize("draw_rows", [8192, 100])  # all draws in one group, or in 7
def test_fast_gradient_variance_equals_the_plain_one(trained, monkeypatch, estimator, draw_rows):
    batch = ARRAYS["train_images"][:32]
    monkeypatch.setattr(fast_evaluation, "DRAW_ROWS", draw_rows)
    fast = evaluation.gradient_variance(trained, batch, estimator, draws=20, seed=2)
    _plain(monkeypatch, trained)
    plain = evaluation.gradient_variance(trained, batch, estimator, draws=20, seed=2)
    assert fast.keys() == plain.keys()
    for name in ("total_variance", "mean_gradient_sq_norm"):
        assert fast[name] == pytest.approx(plain[name], rel=1e-4)
    assert fast["kl_term_variance"] == pytest.approx(plain["kl_term_variance"], rel=1e-4,
                                                     abs=1e-9)


def test_the_fast_path_equals_the_plain_one_for_other_latent_sizes(monkeypatch):
    model = VAE(ModelConfig(latent_size=3))
    images, batch = ARRAYS["test_images"][:20], ARRAYS["train_images"][:16]

    def scores():
        variance = evaluation.gradient_variance(model, batch, "monte_carlo", draws=4)
        return (evaluation.heldout_per_image(model, images, seed=1, batch_size=8)["neg_elbo"],
                evaluation.iwae_per_image(model, images, k=6, batch_size=8, samples_per_call=4),
                variance["total_variance"])

    fast = scores()
    _plain(monkeypatch, model)
    for a, b in zip(fast, scores()):
        np.testing.assert_allclose(a, b, rtol=1e-4)


@pytest.mark.parametrize("group_rows", [1, 150, 10_000])  # 1 image, 3 (with padding), all
def test_fast_iwae_does_not_depend_on_how_images_are_grouped(trained, monkeypatch, group_rows):
    """Groups decode only the units their draws turn on: the numbers do not change."""
    images, seeds = ARRAYS["test_images"][:40], np.array([[1, 2], [3, 4]], np.int32)
    found = fast_evaluation.iwae_log_sums(trained, images, seeds, 50)
    monkeypatch.setattr(fast_evaluation, "GROUP_ROWS", group_rows)
    np.testing.assert_allclose(fast_evaluation.iwae_log_sums(trained, images, seeds, 50), found,
                               rtol=1e-6)


def test_fast_iwae_leaves_out_dead_units_exactly(monkeypatch):
    model = VAE(ModelConfig())
    hidden_bias = model.decoder.trainable_variables[-3]  # of the last hidden layer
    hidden_bias.assign(tf.where(tf.range(hidden_bias.shape[0]) % 4 == 0, -1e3, hidden_bias))
    images = ARRAYS["test_images"][:30]
    fast = evaluation.iwae_per_image(model, images, k=12, batch_size=16, samples_per_call=6)
    _plain(monkeypatch, model)
    plain = evaluation.iwae_per_image(model, images, k=12, batch_size=16, samples_per_call=6)
    np.testing.assert_allclose(fast, plain, rtol=1e-5)
