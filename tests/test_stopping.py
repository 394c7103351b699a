"""Stop requests (vae_model.runs.stopping): training stops at its next chunk and keeps the last
complete epoch; IWAE stops before its next batch."""

import numpy as np
import pytest

from tests.helpers.data import synthetic_arrays
from vae_model import training
from vae_model.evaluation import heldout as evaluation
from vae_model.model.config import ModelConfig
from vae_model.model.networks import VAE
from vae_model.runs import stopping, storage


def test_a_stop_request_ends_training_at_the_next_chunk_and_keeps_the_last_epoch(
        tmp_path, clear_stop):
    arrays = synthetic_arrays()
    config = ModelConfig(batch_size=32, epochs=4, seed=1)  # 8 steps an epoch, 4 chunks

    def stop_during_epoch_2(progress):
        if progress.epoch == 2:
            stopping.request()
    with pytest.raises(stopping.Stopped):
        training.fit(config, arrays["train_images"], arrays["test_images"], tmp_path,
                     steps_per_chunk=2, on_progress=stop_during_epoch_2)
    assert storage.read_json(tmp_path / "state.json")["epoch"] == 1

    stopping.reset()
    resumed = training.fit(config, arrays["train_images"], arrays["test_images"], tmp_path)
    assert resumed.resumed_from_epoch == 1
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]


def test_a_stop_request_ends_iwae_before_its_next_batch(clear_stop):
    model = VAE(ModelConfig())
    images = synthetic_arrays()["test_images"]
    assert np.all(np.isfinite(evaluation.iwae_per_image(model, images, 2, batch_size=16)))
    stopping.request()
    with pytest.raises(stopping.Stopped):
        evaluation.iwae_per_image(model, images, 2, batch_size=16)
