"""The reference NLL by quadrature (vae_model.reference.quadrature) of a model with a 2-D
latent: against brute-force quadrature, where q is misplaced, below the -ELBO and IWAE bounds,
whatever the image order, slot and cache sizes; its log-likelihood linear in the pixels."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tests.helpers.data import synthetic_arrays
from vae_model import UserInputError
from vae_model.evaluation import heldout as evaluation
from vae_model.model.config import ModelConfig
from vae_model.model.networks import VAE
from vae_model.reference import quadrature as reference

IMAGES = synthetic_arrays()["test_images"][:16]


@pytest.fixture(scope="module")
def result(trained):
    return reference.reference_nll(trained, IMAGES)


def brute_force_nll(model, images, spacing, half_width, chunk=2048):
    """-log p(x) from TFP's own log densities on one uniform grid over the whole box
    [-half_width, half_width]², summed in float64: slow, but nothing shared with the method."""
    axis = np.arange(-half_width, half_width + spacing / 2, spacing)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    x = tf.constant(images.astype(np.float32) / 255.0)
    log_sum = np.full(len(images), -np.inf)
    for start in range(0, len(grid), chunk):
        z = tf.constant(grid[start:start + chunk])
        log_joint = (model.decode(z[:, None, :]).log_prob(x[None]) +
                     model.prior.log_prob(z)[:, None]).numpy().astype(np.float64)
        peak = log_joint.max(0)
        log_sum = np.logaddexp(log_sum, peak + np.log(np.exp(log_joint - peak).sum(0)))
    return -(log_sum + 2 * np.log(spacing))


def test_refuses_latent_sizes_other_than_two():
    with pytest.raises(UserInputError, match="2-D latent"):
        reference.reference_nll(VAE(ModelConfig(latent_size=3)), IMAGES)


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli"])
@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_log_likelihood_is_linear_in_the_pixels(likelihood, architecture):
    """(x·Wᵀ)·f(z) + x·b + log p(0|z) is TFP's log p(x|z) for grey pixels, for both
    likelihoods; the MLP's logits split at its last Dense layer (256 features), the conv
    net's do not (W = identity)."""
    keras.utils.set_random_seed(3)
    model = VAE(ModelConfig(likelihood=likelihood, architecture=architecture))
    readout = reference._readout(model)
    assert (readout is not None) == (architecture == "mlp")
    z = tf.random.normal([5, 2], seed=1) * 2.0
    features, constant = reference._grid_terms(model, z, readout is not None)
    x = IMAGES[:4].reshape(4, -1).astype(np.float32) / 255.0
    kernel, bias = ((np.asarray(v) for v in readout) if readout
                    else (np.eye(x.shape[1]), np.zeros(x.shape[1])))
    linear = ((x @ kernel.T) @ features.numpy().T + (x @ bias)[:, None]
              + (constant - model.prior.log_prob(z)).numpy())
    direct = model.decode(z[:, None, :]).log_prob(
        tf.constant(IMAGES[:4].astype(np.float32) / 255.0)[None]).numpy().T
    np.testing.assert_allclose(linear, direct, rtol=1e-5, atol=1e-4)  # float32 rounding


def test_agrees_with_brute_force_quadrature(trained, result):
    assert result["per_image"].dtype == np.float64 and result["per_image"].shape == (16,)
    assert np.all(np.isfinite(result["per_image"])) and np.all(result["error"] >= 0)
    assert result["mean_error"] < 0.1
    q = trained.encode(IMAGES.astype(np.float32) / 255.0)
    spacing = float(tf.reduce_min(q.stddev())) / 2
    half_width = max(6.0, float(tf.reduce_max(tf.abs(q.mean()) + 10 * q.stddev())))
    brute = brute_force_nll(trained, IMAGES, spacing, half_width)
    # the window method against the whole box: stated error plus float32 rounding
    difference = np.abs(result["per_image"] - brute)
    assert np.all(difference <= result["error"] + 2e-3), (difference, result["error"])


def test_finds_the_mass_where_q_is_misplaced(trained, monkeypatch):
    """q sitting on a patch of the latent plane 3 units from the posterior's mass (as trained
    encoders do for ~2% of Fashion-MNIST test images, on a minor mode): its window sees a
    smooth, tiny density; the probe over the prior's box finds the mass, and the window is
    extended to it: the brute-force answer, with a small error."""
    encode = reference._encode
    monkeypatch.setattr(reference, "_encode", lambda model, images: (
        encode(model, images)[0] + [3.0, 0.0], np.full((len(images), 2), 0.05)))
    misplaced = reference.reference_nll(trained, IMAGES, max_points_per_image=2**18)
    brute = brute_force_nll(trained, IMAGES, 0.02, 6.0)
    difference = np.abs(misplaced["per_image"] - brute)
    assert np.all(difference <= misplaced["error"] + 2e-3), (difference, misplaced["error"])
    assert misplaced["mean_error"] < 0.05, misplaced["error"]


def test_bounds_lie_above_the_true_likelihood(trained, result):
    truth, slack = result["mean"], result["mean_error"] + 1e-3
    neg_elbo = np.mean([evaluation.heldout_terms(trained, IMAGES, seed=s)["neg_elbo"]
                        for s in range(10)])
    iwae = {k: np.mean([evaluation.iwae_nll(trained, IMAGES, k=k, seed=s) for s in range(3)])
            for k in (1, 10, 100)}
    assert neg_elbo - truth > -slack  # the inference gap is >= 0
    assert iwae[1] - truth > -slack
    assert iwae[10] - truth > -slack
    assert iwae[100] - truth > -slack
    assert iwae[100] < iwae[10] < iwae[1]  # and the IWAE bound closes in on it
    assert iwae[100] - truth < neg_elbo - truth


def test_does_not_depend_on_image_order_slot_sizes_or_cache_size(trained, result):
    """Reversed images, slots of at most 4 images, and a 4 MB cache (~4000 points: rounds run
    in ~50 groups of tiles, and points are decoded again): the same sums (measured: identical)."""
    other = reference.reference_nll(trained, IMAGES[::-1], image_chunk=4, cache_mb=4)
    np.testing.assert_allclose(other["per_image"][::-1], result["per_image"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(other["error"][::-1], result["error"], rtol=0, atol=1e-6)
