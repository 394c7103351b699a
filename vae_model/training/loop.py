"""Compiled, chunked, resumable training.

Each call into TensorFlow runs many optimisation steps inside one XLA-compiled loop over batches
gathered on the host (as uint8, cast inside): per-step Python dispatch, not arithmetic, is what
limits a small VAE on a CPU. Python regains control only between chunks, for progress, and between
epochs, for evaluation and checkpoints. ``Trainer._step`` is the reference step (Keras model, TFP
distributions, Keras Adam); the MLP with Bernoulli pixels trains with the same math written for
speed in :mod:`vae_model.training.fast_step`, which reads and writes the same variables.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf
import tf_keras as keras

from vae_model import UserInputError
from vae_model.evaluation import heldout as evaluation
from vae_model.model import fast_math
from vae_model.model.config import ModelConfig
from vae_model.model.data import IMAGE_SHAPE
from vae_model.model.networks import VAE
from vae_model.model.objectives import negative_elbo
from vae_model.runs import stopping, storage
from vae_model.training import fast_step

STATE_FILE = "state.json"
_SEEDED_BUILD = threading.Lock()


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


@dataclass
class Progress:
    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    train_neg_elbo: float
    images_per_second: float


@dataclass
class TrainResult:
    model: VAE
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    resumed_from_epoch: int = 0


class Trainer:
    """A model, its Adam optimiser and the compiled reference update (one step, or a chunk of
    steps); ``chunk_runner`` picks the fast chunk where there is one."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.model = VAE(config)
        self.optimizer = keras.optimizers.Adam(config.learning_rate)
        self.optimizer.build(self.model.variables_to_train)
        self.run_steps = self.model.compile(self._run_steps)
        self.step = self.model.compile(self._step)

    def _step(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """One Adam update on one batch of uint8 images; returns the batch's mean -ELBO."""
        x = tf.cast(images, tf.float32) / 255.0
        variables = self.model.variables_to_train
        with tf.GradientTape() as tape:
            loss = negative_elbo(self.model, x, self.config.estimator, seed)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def _run_steps(self, batches: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
        """``_step`` over batches[i] with seeds[i], in order; returns every step's loss."""
        steps = tf.shape(batches)[0]
        losses = tf.TensorArray(tf.float32, size=steps)
        for i in tf.range(steps):
            losses = losses.write(i, self._step(batches[i], seeds[i]))
        return losses.stack()

    def chunk_runner(self, steps_per_chunk: int = 250) -> Callable[[tf.Tensor, tf.Tensor],
                                                                    tf.Tensor]:
        """``run_steps``, or the fast step's equivalent for models it supports (same math,
        same variables, so checkpoints and resuming do not depend on which one ran)."""
        if fast_math.supports(self.config):
            return fast_step.FastTrainer(self, steps_per_chunk).run_steps
        return self.run_steps

    def checkpoint(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(encoder=self.model.encoder, decoder=self.model.decoder,
                                   optimizer=self.optimizer)


def epoch_plan(n_images: int, batch_size: int, seed: int, epoch: int):
    """The shuffled batch order and per-step sampling seeds of one epoch, a pure function of
    (seed, epoch), so a resumed run replays exactly the epochs it did not finish. The last
    partial batch is dropped (a different one every epoch, thanks to the shuffle)."""
    rng = np.random.default_rng([seed, epoch])
    steps = n_images // batch_size
    order = rng.permutation(n_images)[: steps * batch_size].reshape(steps, batch_size)
    seeds = rng.integers(0, 2**31 - 1, size=(steps, 2), dtype=np.int32)
    return order, seeds


def compile_ahead(config: ModelConfig, n_train: int, steps_per_chunk: int = 250) -> None:
    """Trace and compile the fast training chunk for ``config``'s shapes now (a chunk of no
    steps on a throwaway model): XLA takes ~2.5 s of one core for it, which a caller can spend
    while it does other start-up work (``fit`` then finds the program compiled, for every
    model of those shapes in this process). Models without a fast step: nothing to do."""
    if not fast_math.supports(config):
        return
    with _SEEDED_BUILD:  # building draws initial weights from the global generator
        trainer = Trainer(config)
    run_steps = trainer.chunk_runner(_chunk_steps(config, n_train, steps_per_chunk))
    run_steps(np.zeros((0, config.batch_size) + IMAGE_SHAPE, np.uint8), np.zeros((0, 2), np.int32))


def _chunk_steps(config: ModelConfig, n_train: int, steps_per_chunk: int) -> int:
    """Steps per compiled chunk: never longer than an epoch of the (limited) training set; a
    short chunk is padded to this length (one compiled shape)."""
    return min(steps_per_chunk, min(n_train, config.train_limit or n_train) // config.batch_size)


def fit(config: ModelConfig, train_images: np.ndarray, test_images: np.ndarray,
        checkpoint_dir: str | os.PathLike, steps_per_chunk: int = 250,
        on_progress: Callable[[Progress], None] | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``config.epochs`` epochs, resuming from the last complete epoch in
    ``checkpoint_dir``; after each epoch, score the held-out set and checkpoint atomically,
    then call ``on_epoch`` with that epoch's history entry (e.g. for TensorBoard)."""
    config.validate(len(train_images))
    if config.train_limit:
        train_images = train_images[: config.train_limit]
    checkpoint_dir = Path(checkpoint_dir)
    with _SEEDED_BUILD:  # the seed is global: models built in parallel threads take turns
        keras.utils.set_random_seed(config.seed)  # initial weights
        trainer = Trainer(config)
    state = restore(trainer, checkpoint_dir)
    result = TrainResult(trainer.model, state["history"], state["train_seconds"], state["epoch"])
    steps_per_chunk = _chunk_steps(config, len(train_images), steps_per_chunk)
    run_steps = trainer.chunk_runner(steps_per_chunk)
    from vae_model.runs.provenance import code_version, machine  # (once training is under way)
    code = code_version()
    # every machine that trained an epoch of this model (a resumed model may have had several)
    machines = [m for m in state.get("machines", []) if m != machine()] + [machine()]
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        order, seeds = epoch_plan(len(train_images), config.batch_size, config.seed, epoch)
        started, losses = time.perf_counter(), []
        for start in range(0, len(order), steps_per_chunk):
            stopping.check()  # an interrupted run keeps its last complete epoch
            chunk = slice(start, start + steps_per_chunk)
            chunk_losses = run_steps(train_images[order[chunk]], seeds[chunk]).numpy()
            _check_finite(chunk_losses, epoch, start, checkpoint_dir)
            losses.append(chunk_losses)
            if on_progress:
                done = start + len(chunk_losses)
                on_progress(Progress(epoch, config.epochs, done, len(order),
                                     float(np.mean(np.concatenate(losses))),
                                     done * config.batch_size / (time.perf_counter() - started)))
        train_seconds = time.perf_counter() - started
        result.train_seconds += train_seconds
        heldout = evaluation.heldout_terms(trainer.model, test_images, seed=config.seed)
        result.history.append({"epoch": epoch,
                               "train_neg_elbo": float(np.mean(np.concatenate(losses))),
                               "heldout_neg_elbo": heldout["neg_elbo"],
                               "heldout_kl": heldout["kl"],
                               "heldout_reconstruction": heldout["reconstruction"],
                               "train_seconds": train_seconds,
                               "images_per_second": order.size / train_seconds})
        save(trainer, checkpoint_dir, epoch, result.history, result.train_seconds, code,
             machines)
        if on_epoch:
            on_epoch(result.history[-1])
    return result


def _check_finite(losses: np.ndarray, epoch: int, first_step: int, checkpoint_dir: Path):
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise TrainingDiverged(
            f"-ELBO became {losses[bad[0]]} at epoch {epoch}, step {first_step + bad[0] + 1}: "
            f"the last good checkpoint in {checkpoint_dir} is kept; lower --learning-rate")


def save(trainer: Trainer, checkpoint_dir: Path, epoch: int, history: list, seconds: float,
         code: str | None = None, machines: list | None = None):
    """Write the epoch's checkpoint beside the previous one, then commit it by replacing
    state.json (with ``code``, the version that trained it, and ``machines``, the hosts and
    processors that trained it, the last one last); only then are older checkpoints
    removed (including any left by a kill between a commit and its clean-up)."""
    name = f"epoch-{epoch:04d}"
    final, staging = checkpoint_dir / name, checkpoint_dir / f".{name}.tmp"
    for stale in (final, staging):  # left by an interrupted save, never committed
        shutil.rmtree(stale, ignore_errors=True)
    trainer.checkpoint().write(str(staging / "ckpt"))
    os.replace(staging, final)
    storage.write_json(checkpoint_dir / STATE_FILE, {
        "config": trainer.config.to_dict(), "epoch": epoch, "checkpoint": f"{name}/ckpt",
        "history": history, "train_seconds": seconds, "code": code, "machines": machines or []})
    for older in checkpoint_dir.glob("epoch-*"):
        if older.name != name:
            shutil.rmtree(older, ignore_errors=True)


def restore(trainer: Trainer, checkpoint_dir: Path) -> dict:
    """Load the committed checkpoint, if any, into ``trainer``; return its state."""
    state = _read_state(checkpoint_dir)
    if state is None:
        return {"epoch": 0, "history": [], "train_seconds": 0.0}
    _require_same_config(state, trainer.config, checkpoint_dir)
    trainer.checkpoint().read(str(checkpoint_dir / state["checkpoint"])).assert_consumed()
    return state


def load_model(checkpoint_dir: str | os.PathLike) -> tuple[VAE, dict]:
    """The trained model in ``checkpoint_dir`` and its state (config, history)."""
    checkpoint_dir = Path(checkpoint_dir)
    state = _read_state(checkpoint_dir)
    if state is None:
        raise UserInputError(f"no trained model in {checkpoint_dir}: run the train stage first")
    model = VAE(ModelConfig.from_dict(state["config"]).validate())
    weights_only = tf.train.Checkpoint(encoder=model.encoder, decoder=model.decoder)
    status = weights_only.read(str(checkpoint_dir / state["checkpoint"]))
    status.expect_partial().assert_existing_objects_matched()
    return model, state


def _read_state(checkpoint_dir: Path) -> dict | None:
    path = checkpoint_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        return storage.read_json(path)
    except (json.JSONDecodeError, OSError) as err:
        raise UserInputError(f"{path} is unreadable ({err}): delete {checkpoint_dir} to "
                             "retrain this model from scratch") from None


def _require_same_config(state: dict, config: ModelConfig, checkpoint_dir: Path) -> None:
    saved = state["config"]
    # Only the epoch count may grow: more epochs continue the same run.
    differs = sorted(k for k, v in config.to_dict().items() if k != "epochs" and saved.get(k) != v)
    if differs:
        raise UserInputError(
            f"{checkpoint_dir} holds a model trained with other settings ({', '.join(differs)}): "
            "use a new --run-id, or delete that directory to retrain")
    if state["epoch"] > config.epochs:
        raise UserInputError(f"{checkpoint_dir} is already trained for {state['epoch']} epochs, "
                             f"more than the {config.epochs} asked: use a new --run-id")
