"""Compiled, chunked, resumable training (vae_model.training.loop): chunks equal steps, seeded
and reproducible, checkpoints committed whole and resumed (also after SIGKILL or SIGTERM),
settings checked before any work."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tests.helpers.data import synthetic_arrays
from vae_model import UserInputError, training
from vae_model.model.config import ModelConfig
from vae_model.runs import storage

ROOT = Path(__file__).resolve().parents[1]
ARRAYS = synthetic_arrays()
TRAIN, TEST = ARRAYS["train_images"], ARRAYS["test_images"]
SMALL = dict(batch_size=32, epochs=2, seed=3)


def _weights(model):
    return [v.numpy() for v in model.variables_to_train]


@pytest.mark.parametrize("estimator", ["analytic", "monte_carlo"])
def test_chunked_training_equals_step_by_step(estimator):
    config = ModelConfig(estimator=estimator, **SMALL)
    order, seeds = training.epoch_plan(len(TRAIN), config.batch_size, config.seed, 1)
    keras.utils.set_random_seed(0)
    chunked = training.Trainer(config)
    keras.utils.set_random_seed(0)
    stepped = training.Trainer(config)
    np.testing.assert_array_equal(_weights(chunked.model)[0], _weights(stepped.model)[0])

    chunk_losses = chunked.run_steps(TRAIN[order], seeds).numpy()
    step_losses = [float(stepped.step(TRAIN[order[i]], seeds[i])) for i in range(len(order))]
    np.testing.assert_allclose(chunk_losses, step_losses, rtol=2e-4)
    for a, b in zip(_weights(chunked.model), _weights(stepped.model)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert int(chunked.optimizer.iterations) == int(stepped.optimizer.iterations) == len(order)


def test_epoch_plan_shuffles_differently_each_epoch_and_reproducibly():
    a1, s1 = training.epoch_plan(100, 10, seed=0, epoch=1)
    a2, _ = training.epoch_plan(100, 10, seed=0, epoch=2)
    again, s1_again = training.epoch_plan(100, 10, seed=0, epoch=1)
    assert a1.shape == (10, 10) and sorted(a1.ravel()) == list(range(100))
    assert not np.array_equal(a1, a2)
    np.testing.assert_array_equal(a1, again), np.testing.assert_array_equal(s1, s1_again)
    assert training.epoch_plan(70, 32, 0, 1)[0].shape == (2, 32)  # partial batch dropped


def test_training_lowers_the_loss_and_records_history(tmp_path):
    result = training.fit(ModelConfig(batch_size=32, epochs=3), TRAIN, TEST, tmp_path)
    history = result.history
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_neg_elbo"] < history[0]["train_neg_elbo"]
    assert history[-1]["heldout_neg_elbo"] < history[0]["heldout_neg_elbo"]
    for h in history:
        assert h["heldout_neg_elbo"] == pytest.approx(h["heldout_kl"] + h["heldout_reconstruction"])
        assert h["heldout_kl"] > 0


def test_same_seed_same_metrics_other_seed_other_metrics(tmp_path):
    runs = [training.fit(ModelConfig(**{**SMALL, "seed": s}), TRAIN, TEST, tmp_path / str(i))
            .history for i, s in enumerate((3, 3, 4))]
    for a, b in zip(runs[0], runs[1]):
        assert a["train_neg_elbo"] == pytest.approx(b["train_neg_elbo"], rel=1e-5)
        assert a["heldout_neg_elbo"] == pytest.approx(b["heldout_neg_elbo"], rel=1e-5)
    assert runs[0][-1]["train_neg_elbo"] != pytest.approx(runs[2][-1]["train_neg_elbo"], rel=1e-6)


def test_compile_ahead_compiles_what_fit_runs_and_leaves_its_weights_alone(tmp_path):
    """The CLI compiles the first model's training chunk while the flow starts: fit must then
    find that program (no new trace) and train exactly as it would have (its seeded initial
    weights not disturbed by the throwaway model). A batch size no other test uses: a fresh
    signature."""
    from vae_model.training import fast_step

    config = ModelConfig(batch_size=24, epochs=1, seed=3)
    alone = training.fit(config, TRAIN, TEST, tmp_path / "alone")
    traces = fast_step.train_chunk.experimental_get_tracing_count()
    training.compile_ahead(config, len(TRAIN))
    assert fast_step.train_chunk.experimental_get_tracing_count() == traces  # traced by fit
    other = ModelConfig(batch_size=20, epochs=1, seed=3)
    training.compile_ahead(other, len(TRAIN))
    assert fast_step.train_chunk.experimental_get_tracing_count() == traces + 1
    again = training.fit(config, TRAIN, TEST, tmp_path / "again")
    assert again.history[0]["train_neg_elbo"] == alone.history[0]["train_neg_elbo"]
    training.fit(other, TRAIN, TEST, tmp_path / "other")
    assert fast_step.train_chunk.experimental_get_tracing_count() == traces + 1


def test_resume_after_interruption_ends_where_an_uninterrupted_run_ends(tmp_path):
    straight = training.fit(ModelConfig(**{**SMALL, "epochs": 3}), TRAIN, TEST, tmp_path / "a")
    training.fit(ModelConfig(**{**SMALL, "epochs": 1}), TRAIN, TEST, tmp_path / "b")
    resumed = training.fit(ModelConfig(**{**SMALL, "epochs": 3}), TRAIN, TEST, tmp_path / "b")
    assert resumed.resumed_from_epoch == 1 and len(resumed.history) == 3
    for a, b in zip(straight.history, resumed.history):
        assert a["train_neg_elbo"] == pytest.approx(b["train_neg_elbo"], rel=1e-4)
    for a, b in zip(_weights(straight.model), _weights(resumed.model)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    # only the newest committed checkpoint is kept
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["epoch-0003", "state.json"]


def test_an_uncommitted_checkpoint_is_ignored_on_resume(tmp_path):
    training.fit(ModelConfig(**SMALL), TRAIN, TEST, tmp_path)
    (tmp_path / ".epoch-0003.tmp").mkdir()  # as left by a kill during a save
    (tmp_path / ".epoch-0003.tmp" / "ckpt.index").write_bytes(b"half")
    result = training.fit(ModelConfig(**{**SMALL, "epochs": 3}), TRAIN, TEST, tmp_path)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert not (tmp_path / ".epoch-0003.tmp").exists()


def test_finished_model_is_not_retrained(tmp_path):
    first = training.fit(ModelConfig(**SMALL), TRAIN, TEST, tmp_path)
    again = training.fit(ModelConfig(**SMALL), TRAIN, TEST, tmp_path)
    assert again.resumed_from_epoch == 2 and again.history == first.history


def test_resuming_with_other_settings_is_refused(tmp_path):
    training.fit(ModelConfig(**SMALL), TRAIN, TEST, tmp_path)
    with pytest.raises(UserInputError, match="other settings \\(learning_rate\\)"):
        training.fit(ModelConfig(**{**SMALL, "learning_rate": 0.01}), TRAIN, TEST, tmp_path)


def test_nan_loss_fails_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    training.fit(ModelConfig(**{**SMALL, "epochs": 1}), TRAIN, TEST, tmp_path)
    state_before = (tmp_path / "state.json").read_text()
    with pytest.raises(training.TrainingDiverged, match=r"at epoch \d+, step \d+"):
        training.fit(ModelConfig(**{**SMALL, "epochs": 1, "learning_rate": 1e30}), TRAIN,
                     TEST, tmp_path / "fresh")
    assert (tmp_path / "state.json").read_text() == state_before
    assert not (tmp_path / "fresh" / "state.json").exists()


def test_loaded_model_equals_trained_model(tmp_path):
    result = training.fit(ModelConfig(**SMALL), TRAIN, TEST, tmp_path)
    model, state = training.load_model(tmp_path)
    x = tf.constant(TEST[:4], tf.float32) / 255.0
    np.testing.assert_allclose(model.encode(x).mean(), result.model.encode(x).mean(), rtol=1e-6)
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == state["epoch"] == 2


def test_continuous_bernoulli_variant_trains(tmp_path):
    result = training.fit(ModelConfig(likelihood="continuous_bernoulli", batch_size=32, epochs=3),
                          TRAIN, TEST, tmp_path)
    losses = [h["train_neg_elbo"] for h in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    # a normalised density on [0, 1]^784 can exceed 1: -ELBO well below the Bernoulli's
    assert losses[-1] < 200


@pytest.mark.parametrize("change, message", [
    (dict(estimator="exact"), "unknown estimator 'exact'"),
    (dict(architecture="resnet"), "unknown architecture"),
    (dict(epochs=0), "epochs must be a whole number > 0"),
    (dict(latent_size=-1), "latent_size must be"),
    (dict(batch_size=0), "batch_size must be"),
    (dict(learning_rate=float("nan")), "learning_rate must be a finite number"),
    (dict(learning_rate=float("inf")), "learning_rate must be a finite number"),
    (dict(batch_size=1000), "larger than the 256 training images"),
])
def test_bad_settings_are_refused_before_any_work(tmp_path, change, message):
    with pytest.raises(UserInputError, match=message):
        training.fit(ModelConfig(**{**SMALL, **change}), TRAIN, TEST, tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_checkpoint_orphaned_between_commit_and_clean_up_is_removed(tmp_path):
    training.fit(ModelConfig(**SMALL), TRAIN, TEST, tmp_path)
    (tmp_path / "epoch-0001").mkdir()  # as left by a kill right after committing epoch 2
    training.fit(ModelConfig(**{**SMALL, "epochs": 3}), TRAIN, TEST, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0003", "state.json"]


def test_a_checkpoint_of_another_configuration_is_not_loaded(tmp_path):
    training.fit(ModelConfig(batch_size=32, epochs=1), TRAIN, TEST, tmp_path)
    state = storage.read_json(tmp_path / "state.json")
    state["config"]["latent_size"] = 3  # e.g. copied from another run
    storage.write_json(tmp_path / "state.json", state)
    with pytest.raises(Exception, match="latent|shape"):
        training.load_model(tmp_path)


KILLED = dict(batch_size=32, epochs=8, seed=1)
TRAINER = """
import sys, numpy as np
from tests.helpers.data import synthetic_arrays
from vae_model import training
from vae_model.model.config import ModelConfig
arrays = synthetic_arrays()
train = np.tile(arrays["train_images"], (20, 1, 1))  # slow enough to be killed mid-run
training.fit(ModelConfig(**{config}), train, arrays["test_images"], sys.argv[1],
             steps_per_chunk=20)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_training_resumes_from_its_last_complete_epoch(tmp_path, sig):
    process = subprocess.Popen([sys.executable, "-c", TRAINER.format(config=KILLED),
                                str(tmp_path)], cwd=ROOT)
    state = tmp_path / "state.json"
    deadline = time.monotonic() + 240
    while not (state.exists() and json.loads(state.read_text())["epoch"] >= 2):
        assert process.poll() is None, "training ended before it could be interrupted"
        assert time.monotonic() < deadline, "training never reached epoch 2"
        time.sleep(0.02)
    process.send_signal(sig)
    assert process.wait(timeout=60) != 0
    killed_at = storage.read_json(state)["epoch"]
    assert killed_at < KILLED["epochs"], "the kill came too late to test anything"

    train = np.tile(TRAIN, (20, 1, 1))
    resumed = training.fit(ModelConfig(**KILLED), train, TEST, tmp_path)
    assert resumed.resumed_from_epoch == killed_at
    assert [h["epoch"] for h in resumed.history] == list(range(1, KILLED["epochs"] + 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0008", "state.json"]
