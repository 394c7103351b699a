"""The reference's lattice tiles (vae_model.reference.tiles): the z-order of lattice points, and
caches whose memory goes to the next cache without its points leaking into the sums."""

import numpy as np
import tf_keras as keras

from tests.helpers.data import synthetic_arrays
from vae_model.model.config import ModelConfig
from vae_model.model.networks import VAE
from vae_model.reference import quadrature as reference
from vae_model.reference import tiles as reference_tiles
from vae_model.reference.tiles import z_order

IMAGES = synthetic_arrays()["test_images"][:16]


def test_z_order_keeps_aligned_blocks_together():
    """On a 64 x 64 patch of lattice points around the origin, every aligned 8 x 8 block is
    64 consecutive points of the order: a group of decoded points covers a small patch."""
    i, j = (a.ravel() for a in np.meshgrid(np.arange(-32, 32), np.arange(-32, 32),
                                           indexing="ij"))
    order = z_order(i.astype(np.int64), j.astype(np.int64))
    assert sorted(order) == list(range(64 * 64))
    block = ((i[order] + 32) // 8) * 8 + (j[order] + 32) // 8
    assert np.all(block.reshape(64, 64) == block.reshape(64, 64)[:, :1])
    assert len(np.unique(block.reshape(64, 64)[:, 0])) == 64


def test_a_finished_cache_leaves_its_memory_to_the_next(trained, monkeypatch):
    """Fresh memory costs a page fault per 4 KB page (~1 s a model), so a finished cache's
    memory goes to the next cache of its size, still holding what it wrote: another model's
    points then, and the sums must not see them."""
    monkeypatch.setattr(reference_tiles, "_spare", [])
    on_fresh_memory = reference.reference_nll(trained, IMAGES)
    keras.utils.set_random_seed(7)
    reference.reference_nll(VAE(ModelConfig()), IMAGES)  # an untrained model: other points
    fresh = []
    allocate = reference_tiles._aligned_empty
    monkeypatch.setattr(reference_tiles, "_aligned_empty",
                        lambda *shape: fresh.append(shape) or allocate(*shape))
    reused = reference.reference_nll(trained, IMAGES)
    assert fresh == []
    np.testing.assert_array_equal(reused["per_image"], on_fresh_memory["per_image"])
    np.testing.assert_array_equal(reused["error"], on_fresh_memory["error"])
