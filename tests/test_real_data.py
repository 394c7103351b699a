"""The canonical Fashion-MNIST files, where this machine has them (CI installs Debian's
dataset-fashion-mnist through the test command)."""

import numpy as np
import pytest

from vae_model import UserInputError
from vae_model.model import data

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real():
    try:
        return data.load(download=False)
    except UserInputError as err:
        pytest.skip(f"canonical Fashion-MNIST not installed here: {err}")


def test_canonical_files_verify_and_match_published_statistics(real):
    assert real.train_images.shape == (60000, 28, 28) and real.test_images.shape == (10000, 28, 28)
    scaled = data.to_float(real.train_images)
    assert scaled.mean() == pytest.approx(0.2860, abs=5e-5)
    assert scaled.std() == pytest.approx(0.3530, abs=5e-5)
    assert np.bincount(real.train_labels).tolist() == [6000] * 10
    assert np.bincount(real.test_labels).tolist() == [1000] * 10
