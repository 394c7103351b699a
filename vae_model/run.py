"""A run directory and the pipeline's stages as plain functions over paths.

``artifacts/runs/<run-id>/`` holds ``models/<model>/`` (checkpoints, ``evaluation.json``),
``figures/*.png``, and, written last by :mod:`vae_model.report`, ``metrics.json``,
``comparison.csv``, ``report.md``/``report.html`` and ``manifest.json`` (whose ``status`` says
whether the run is complete). Prefect tasks wrap these functions; a notebook can call them too.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from vae_model import UserInputError, data, stopping, storage
from vae_model.config import ESTIMATORS, ModelConfig, require_positive_int

# TensorFlow (training, evaluation) is imported where a stage runs, not here: the CLI imports
# this module to check its input, and its one-line errors should not wait for TensorFlow.

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
EVALUATION_FILE = "evaluation.json"


def run_dir(artifacts_root: str | os.PathLike, run_id: str) -> Path:
    """``<root>/runs/<run_id>``, refusing ids that could escape the artifacts root."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id) or ".." in run_id:
        raise UserInputError(f"run id {run_id!r} is not allowed: use letters, digits, '.', '_' "
                             "and '-' (at most 100, no '..'), e.g. 2026-11-23-nightly")
    root = Path(artifacts_root).expanduser().resolve()
    path = (root / "runs" / run_id).resolve()
    if root not in path.parents:
        raise UserInputError(f"run id {run_id!r} resolves outside {root}: pick another")
    return path


def load_manifest(run: Path) -> dict:
    """The manifest of a complete run (refusing an incomplete or missing one)."""
    manifest = run / "manifest.json"
    if not manifest.exists():
        raise UserInputError(f"{run} has no manifest.json (no complete run there): run the "
                             f"pipeline with --run-id {run.name} to finish it first")
    content = storage.read_json(manifest)
    if "models" not in content:  # written by a failed run that never completed
        raise UserInputError(
            f"run {run.name} failed at stage {content.get('stage', '?')} "
            f"({content.get('error', 'no error recorded')}): finish it with "
            f"'vae-pipeline run --run-id {run.name}' first")
    return content


def ensure_writable(directory: Path) -> Path:
    """Fail now, with the fix, rather than after training when the first file is written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        storage.write_text(directory / ".write-check", "ok\n").unlink()
    except OSError as err:
        raise UserInputError(f"cannot write to {directory} ({err.strerror}): free disk space, "
                             "fix its permissions or pass another --artifacts-dir") from None
    return directory


def model_dir(run: Path, model_name: str) -> Path:
    return run / "models" / model_name


def verify_data(data_dir: str | None = None) -> dict:
    """Locate and verify the data; small, JSON-able facts about it for the manifest."""
    dataset = data.load(data_dir)
    return {"data_dir": str(dataset.source), "sha256": dataset.sha256,
            "train_images": len(dataset.train_images), "test_images": len(dataset.test_images)}


def train(config: ModelConfig, data_dir: str | None, run: Path,
          on_progress: Callable[["training.Progress"], None] | None = None,
          steps_per_chunk: int = 250) -> Path:
    """Train (or resume) one model into ``models/<name>``, with TensorBoard summaries there
    (per-epoch scalars; images after training); returns that directory."""
    from vae_model import training
    from vae_model.tensorboard import EpochSummaries

    dataset = data.load(data_dir)
    config.validate(len(dataset.train_images))
    directory = ensure_writable(model_dir(run, config.name))
    with EpochSummaries(directory) as summaries:
        result = training.fit(config, dataset.train_images, dataset.test_images, directory,
                              steps_per_chunk=steps_per_chunk, on_progress=on_progress,
                              on_epoch=summaries)
        if len(result.history) > result.resumed_from_epoch:  # trained at least one epoch
            summaries.images(result.model, dataset.test_images, config.seed,
                             result.history[-1]["epoch"])
    return directory


PER_IMAGE_FILE = "per_image.csv"


def evaluate(checkpoint_dir: str | os.PathLike, data_dir: str | None, iwae_k: int = 100,
             gradient_draws: int = 100, seed: int | None = None) -> Path:
    """Held-out -ELBO (analytic KL for every model), IWAE-k NLL, for 2-D latents the reference
    NLL (numerical integration), each with its standard error over test images, and the
    gradient variance of both estimators at the trained weights. Writes ``per_image.csv``
    (one row per test image) and then ``evaluation.json`` beside the model."""
    require_positive_int("iwae_k", iwae_k)  # before the model and data are loaded
    from vae_model import evaluation, training

    checkpoint_dir = Path(checkpoint_dir)
    model, state = training.load_model(checkpoint_dir)
    seed = state["config"]["seed"] if seed is None else seed
    dataset = data.load(data_dir)
    images, timings = dataset.test_images, {}

    def timed(name, fn, *args, **kwargs):
        stopping.check()
        started = time.perf_counter()
        value = fn(*args, **kwargs)
        timings[f"{name}_seconds"] = time.perf_counter() - started
        return value

    per_image = {"index": np.arange(len(images))}
    terms = timed("heldout", evaluation.heldout_per_image, model, images, seed=seed)
    per_image.update(neg_elbo=terms["neg_elbo"], kl=terms["kl"],
                     reconstruction=terms["reconstruction"])
    per_image["iwae_nll"] = timed("iwae", evaluation.iwae_per_image, model, images, iwae_k,
                                  seed=seed)
    heldout = {}
    if model.latent_size == 2:
        from vae_model import reference
        ref = timed("reference", reference.reference_nll, model, images)
        per_image["reference_nll"] = ref["per_image"]
        heldout["reference_method"] = ref["method"]
        # the numerical error of the mean: per-image errors can share a sign, so add them up
        heldout["reference_nll_error"] = float(np.mean(np.abs(ref["error"])))
    for name, values in per_image.items():
        if name != "index":
            heldout[name] = float(np.mean(values))
            heldout[f"{name}_stderr"] = float(np.std(values, ddof=1) / np.sqrt(len(values)))
    heldout["iwae_k"] = iwae_k
    heldout["n_images"] = len(images)
    batch = dataset.train_images[: state["config"]["batch_size"]]
    variance = timed("gradient_variance", lambda: {
        name: evaluation.gradient_variance(model, batch, name, gradient_draws, seed)
        for name in ESTIMATORS})
    storage.write_text(checkpoint_dir / PER_IMAGE_FILE,
                       pd.DataFrame(per_image).to_csv(index=False, float_format="%.6f"))
    from vae_model.history import code_version
    return storage.write_json(checkpoint_dir / EVALUATION_FILE, {
        "heldout": heldout, "gradient_variance": variance, "timings": timings,
        "code": code_version()})


def render_figures(checkpoint_dirs: list[str], data_dir: str | None, run: Path,
                   seed: int = 0, all_models: bool = False) -> list[Path]:
    """The run's figures (see :mod:`vae_model.figures`): image figures for the lowest seed of
    each configuration and estimator, or for every model with ``all_models``."""
    from vae_model import figures, training  # matplotlib only where figures are drawn

    dataset = data.load(data_dir)
    records, directories = {}, {}
    for directory in map(Path, checkpoint_dirs):
        state = storage.read_json(directory / training.STATE_FILE)
        config = ModelConfig.from_dict(state["config"])
        records[config.name] = {"estimator": config.estimator, "seed": config.seed,
                                "configuration": config.configuration,
                                "history": state["history"]}
        if (directory / EVALUATION_FILE).exists():
            scores = storage.read_json(directory / EVALUATION_FILE)
            records[config.name].update(heldout=scores["heldout"],
                                        gradient_variance=scores["gradient_variance"])
        directories[config.name] = directory
    return figures.render_all(
        records, run / "figures", load_model=lambda name: training.load_model(
            directories[name])[0], test_images=dataset.test_images,
        test_labels=dataset.test_labels, seed=seed, all_models=all_models)
