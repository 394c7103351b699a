"""TensorBoard event files written during training: every epoch's scalars once (also across a
resume), equal to the checkpointed history, in the model's own directory even when models train
in parallel threads; reconstructions and prior samples as images."""

import threading

import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_model import stages
from vae_model.model.config import ModelConfig
from vae_model.results.tensorboard import N_IMAGES, SCALARS, SCALE
from vae_model.runs import storage
from vae_model.runs.directory import model_dir


def _events(directory) -> dict:
    """tag -> [(step, value as array)] from every event file in ``directory``."""
    accumulator = EventAccumulator(str(directory), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {tag: [(e.step, tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)]
            for tag in accumulator.Tags()["tensors"]}


def _train_in_threads(configs, run_dir):
    errors = []

    def train(config):
        try:
            stages.train(config, None, run_dir)
        except Exception as err:  # surfaced below
            errors.append(err)
    threads = [threading.Thread(target=train, args=(c,)) for c in configs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_scalars_and_images_per_model_also_in_parallel_and_across_a_resume(tiny_data, tmp_path):
    configs = [ModelConfig(estimator, epochs=2, batch_size=32, seed=seed)
               for estimator, seed in (("analytic", 0), ("monte_carlo", 1))]
    _train_in_threads(configs, tmp_path)
    longer = ModelConfig("analytic", epochs=3, batch_size=32, seed=0)
    stages.train(longer, None, tmp_path)  # resumes at epoch 3
    stages.train(longer, None, tmp_path)  # nothing left to train: writes nothing

    for config, epochs in ((longer, 3), (configs[1], 2)):
        directory = model_dir(tmp_path, config.name)
        history = storage.read_json(directory / "state.json")["history"]
        events = _events(directory)
        for tag, (key, _) in SCALARS.items():
            steps = [step for step, _ in events[tag]]
            assert steps == list(range(1, epochs + 1)), (config.name, tag, steps)
            values = [float(value) for _, value in events[tag]]
            # each model's own numbers: the two threads' writers did not mix
            np.testing.assert_allclose(values, [h[key] for h in history], rtol=1e-6)
        # images after each training that trained something (epochs 2 and 3 for the first)
        image_steps = [2, 3] if config is longer else [2]
        for tag, rows in (("reconstructions", 2), ("prior_samples", 2)):
            assert [step for step, _ in events[tag]] == image_steps, (config.name, tag)
            width, height, png = events[tag][-1][1]  # tf.summary.image: [w, h, encoded...]
            assert (int(width), int(height)) == (28 * SCALE * len_per_row(tag),
                                                 28 * SCALE * rows)
            decoded = tf.io.decode_png(png).numpy()
            assert decoded.shape == (28 * SCALE * rows, 28 * SCALE * len_per_row(tag), 1)
            assert decoded.std() > 0  # not a blank canvas


def len_per_row(tag: str) -> int:
    return N_IMAGES if tag == "reconstructions" else N_IMAGES // 2
