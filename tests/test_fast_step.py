"""The fast step (vae_model.training.fast_step) is the reference step (Trainer._step) computed
another way: same losses, same parameter and Adam updates, step by step, to float rounding."""

import numpy as np
import pytest
import tf_keras as keras

from tests.helpers.data import synthetic_arrays
from vae_model import training
from vae_model.model.config import ModelConfig
from vae_model.training import fast_step

TRAIN = synthetic_arrays()["train_images"]


def _pair(config):
    """A reference trainer and a fast one with the same initial weights."""
    keras.utils.set_random_seed(config.seed)
    reference = training.Trainer(config)
    keras.utils.set_random_seed(config.seed)
    fast = training.Trainer(config)
    return reference, fast, fast_step.FastTrainer(fast)


def _state(trainer):
    """Weights, Adam's moments and step count: everything a step changes."""
    optimizer = trainer.optimizer
    tensors = (trainer.model.variables_to_train + optimizer._momentums
               + optimizer._velocities)
    return [v.numpy() for v in tensors], int(optimizer.iterations)


def _assert_same_state(a, b):
    (tensors_a, step_a), (tensors_b, step_b) = _state(a), _state(b)
    assert step_a == step_b
    for x, y in zip(tensors_a, tensors_b):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("estimator", ["analytic", "monte_carlo"])
def test_fast_steps_equal_reference_steps_one_by_one(estimator):
    config = ModelConfig(estimator=estimator, batch_size=32, seed=5)
    order, seeds = training.epoch_plan(len(TRAIN), config.batch_size, config.seed, 1)
    reference, fast, fast_trainer = _pair(config)
    for i in range(4):
        reference_loss = float(reference.step(TRAIN[order[i]], seeds[i]))
        fast_losses = fast_trainer.run_steps(TRAIN[order[i:i + 1]], seeds[i:i + 1]).numpy()
        assert fast_losses.shape == (1,)
        assert fast_losses[0] == pytest.approx(reference_loss, rel=1e-5)
        _assert_same_state(reference, fast)


@pytest.mark.parametrize("estimator", ["analytic", "monte_carlo"])
def test_a_fast_chunk_equals_reference_steps_and_continues_from_them(estimator):
    config = ModelConfig(estimator=estimator, batch_size=32, seed=2)
    order, seeds = training.epoch_plan(len(TRAIN), config.batch_size, config.seed, 1)
    reference, fast, fast_trainer = _pair(config)
    reference_losses = reference.run_steps(TRAIN[order], seeds).numpy()
    # the first half by the reference step, the rest by the fast one: the hand-over is exact
    half = len(order) // 2
    fast_losses = np.concatenate([
        fast.run_steps(TRAIN[order[:half]], seeds[:half]).numpy(),
        fast_trainer.run_steps(TRAIN[order[half:]], seeds[half:]).numpy()])
    np.testing.assert_allclose(fast_losses, reference_losses, rtol=1e-4)
    _assert_same_state(reference, fast)


def test_fit_uses_the_fast_step_only_where_it_applies():
    conv = training.Trainer(ModelConfig(architecture="conv"))
    assert conv.chunk_runner() == conv.run_steps
    mlp = training.Trainer(ModelConfig())
    assert mlp.chunk_runner() != mlp.run_steps


def test_chunks_of_any_length_share_one_compiled_program():
    # An epoch's last chunk is shorter (60000 images: 250, 250, 250, 187 steps): padded to the
    # chunk length, it runs the same traced (and XLA-compiled) program as the full ones, and
    # only its own steps count.
    trainer = training.Trainer(ModelConfig(latent_size=3))  # a shape no other test traces
    run = fast_step.FastTrainer(trainer, steps_per_chunk=6).run_steps
    order, seeds = training.epoch_plan(len(TRAIN), 8, 0, 1)  # batches of 8: enough of them
    traced = fast_step.train_chunk.experimental_get_tracing_count()
    lengths = [len(run(TRAIN[order[:n]], seeds[:n])) for n in (6, 4, 1)]
    assert lengths == [6, 4, 1]
    assert int(trainer.optimizer.iterations) == 11
    assert fast_step.train_chunk.experimental_get_tracing_count() == traced + 1
