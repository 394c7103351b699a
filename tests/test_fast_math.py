"""The fast path's one rule (fast_math.supports) and its shared kernels: the draw is TFP's."""

import numpy as np
import tensorflow as tf

from vae_model.model import fast_math
from vae_model.model.config import ModelConfig
from vae_model.model.networks import VAE


def test_the_fast_path_covers_only_the_mlp_with_bernoulli_pixels(trained):
    assert fast_math.supports(trained) and fast_math.supports(ModelConfig())
    for config in (ModelConfig(architecture="conv"),
                   ModelConfig(likelihood="continuous_bernoulli")):
        assert not fast_math.supports(VAE(config)) and not fast_math.supports(config)


def test_the_draw_is_the_one_tfp_makes():
    loc, scale = tf.constant([[0.5, -1.0]] * 3), tf.constant([[2.0, 0.1]] * 3)
    seed = tf.constant([11, 22], tf.int32)
    from vae_model.model.networks import tfd

    q = tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)
    np.testing.assert_allclose(loc + scale * fast_math.standard_normal(seed, 1, 3, 2)[0],
                               q.sample(seed=seed), rtol=1e-6)
    np.testing.assert_allclose(loc + scale * fast_math.standard_normal(seed, 4, 3, 2),
                               q.sample(4, seed=seed), rtol=1e-6)
