"""The MLP's decoding for the reference (vae_model.reference.fast) against the plain one."""

import numpy as np
import tensorflow as tf

from vae_model.reference import fast as fast_reference
from vae_model.reference import quadrature as reference


def test_fast_decoding_matches_the_plain_one(trained):
    """fast_reference leaves out of the last product the units a group of points does not
    turn on: the same features, and the same constants up to float32 rounding (the 784 pixels
    summed in another order)."""
    patch = np.stack(np.meshgrid(*[np.linspace(-0.3, 0.3, 32)] * 2), -1).reshape(-1, 2) + 0.5
    spread = np.random.default_rng(0).normal(scale=3.0, size=(fast_reference.GROUP, 2))
    z = np.concatenate([patch, spread]).astype(np.float32)
    hidden = fast_reference._hidden(_decoder_layers(trained), z[:fast_reference.GROUP])
    assert 0 < len(fast_reference.units_on(hidden)) < 256  # some units are left out
    features, constant = fast_reference.grid_terms(trained)(z)
    plain_features, plain_constant = reference._grid_terms(trained, tf.constant(z), True)
    np.testing.assert_allclose(features, plain_features, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(constant, plain_constant, rtol=2e-6, atol=1e-4)


def _decoder_layers(model):
    weights = model.decoder.trainable_variables
    return list(zip(weights[:-2:2], weights[1:-2:2]))
