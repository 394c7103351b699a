"""The held-out scores (vae_model.evaluation.heldout): -ELBO terms, the IWAE bound, the
gradient variance of each KL estimator, on a trained model and on every kind of model."""

import numpy as np
import pytest

from tests.helpers.data import synthetic_arrays
from vae_model import UserInputError
from vae_model.evaluation import heldout as evaluation
from vae_model.model.config import ModelConfig
from vae_model.model.networks import VAE

ARRAYS = synthetic_arrays()


def test_heldout_terms_add_up(trained):
    terms = evaluation.heldout_terms(trained, ARRAYS["test_images"], batch_size=20)
    assert terms["neg_elbo"] == pytest.approx(terms["kl"] + terms["reconstruction"])
    assert terms["kl"] > 0 and terms["reconstruction"] > 0


def test_heldout_does_not_depend_on_batching(trained):
    a = evaluation.heldout_terms(trained, ARRAYS["test_images"], batch_size=64)
    b = evaluation.heldout_terms(trained, ARRAYS["test_images"], batch_size=64)
    assert a == b  # same seed, same draws
    assert evaluation.heldout_terms(trained, ARRAYS["test_images"], batch_size=16)["kl"] == \
        pytest.approx(a["kl"], rel=1e-5)  # analytic KL has no sampling noise


def test_iwae_bound_is_below_the_elbo_and_tightens_with_k(trained):
    images = ARRAYS["test_images"]
    neg_elbo = np.mean([evaluation.heldout_terms(trained, images, seed=s)["neg_elbo"]
                        for s in range(5)])
    iwae_1 = evaluation.iwae_nll(trained, images, k=1)
    iwae_50 = evaluation.iwae_nll(trained, images, k=50)
    iwae_500 = evaluation.iwae_nll(trained, images, k=500, samples_per_call=64)
    assert iwae_1 == pytest.approx(neg_elbo, rel=0.01)  # k=1 is the ELBO itself
    assert iwae_500 <= iwae_50 <= neg_elbo
    assert iwae_50 - iwae_500 < neg_elbo - iwae_50  # diminishing returns


def test_iwae_chunking_does_not_change_the_estimate_much(trained):
    images = ARRAYS["test_images"]
    whole = evaluation.iwae_nll(trained, images, k=64, samples_per_call=64)
    chunked = evaluation.iwae_nll(trained, images, k=64, samples_per_call=10, batch_size=7)
    assert chunked == pytest.approx(whole, abs=0.5)


@pytest.mark.parametrize("k", [0, -3, 2.5])
def test_iwae_refuses_bad_k(trained, k):
    with pytest.raises(UserInputError, match="k must be a whole number > 0"):
        evaluation.iwae_nll(trained, ARRAYS["test_images"], k=k)


def test_monte_carlo_kl_adds_gradient_variance(trained):
    batch = ARRAYS["train_images"][:32]
    analytic = evaluation.gradient_variance(trained, batch, "analytic", draws=30)
    monte_carlo = evaluation.gradient_variance(trained, batch, "monte_carlo", draws=30)
    assert analytic["kl_term_variance"] == pytest.approx(0.0, abs=1e-6)
    assert monte_carlo["kl_term_variance"] > 1e-4
    assert analytic["total_variance"] > 0 and monte_carlo["total_variance"] > 0
    assert analytic["mean_gradient_sq_norm"] > 0


@pytest.mark.parametrize("config", [ModelConfig(architecture="conv"),
                                    ModelConfig(likelihood="continuous_bernoulli"),
                                    ModelConfig(latent_size=3)], ids=lambda c: c.name)
def test_every_model_is_evaluated(config):
    """Conv nets (no XLA) and continuous Bernoulli pixels take the plain path; the fast one
    handles latent sizes other than 2."""
    model = VAE(config)
    images, batch = ARRAYS["test_images"][:20], ARRAYS["train_images"][:16]
    terms = evaluation.heldout_terms(model, images, batch_size=8)
    assert terms["neg_elbo"] == pytest.approx(terms["kl"] + terms["reconstruction"])
    iwae = evaluation.iwae_per_image(model, images, k=6, batch_size=8, samples_per_call=4)
    assert iwae.shape == (20,) and np.all(np.isfinite(iwae))
    variance = evaluation.gradient_variance(model, batch, "monte_carlo", draws=4)
    assert variance["total_variance"] > 0 and variance["kl_term_variance"] > 0


def test_gradient_variance_refuses_an_unknown_estimator(trained):
    with pytest.raises(UserInputError, match="unknown estimator"):
        evaluation.gradient_variance(trained, ARRAYS["train_images"][:8], "exact", draws=4)
