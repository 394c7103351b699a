"""The pipeline's stages as plain functions over paths: verify the data, train one model,
evaluate it, draw the run's figures (the report is :mod:`vae_model.results.report`). Prefect
tasks wrap these functions; a notebook can call them too.

A run may live in an object store (:mod:`vae_model.runs.store`): each stage then works in a
private scratch copy of what it reads, and uploads what it writes, the file that commits its
work last (a model's ``state.json``, an ``evaluation.json``), so that any machine can take up
the next stage, or resume a killed one, from the store alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from vae_model.evaluation.decision import DEFAULT_MARGIN
from vae_model.model import data
from vae_model.model.config import ESTIMATORS, ModelConfig, require_positive_int
from vae_model.runs import stopping, storage, store
from vae_model.runs.directory import EVALUATION_FILE, PER_IMAGE_FILE, ensure_writable, model_dir

STATE_FILE = "state.json"  # = training.STATE_FILE, without importing TensorFlow here

# TensorFlow (training, evaluation) is imported where a stage runs, not here: a flow imports
# this module before it checks its input, and its one-line errors should not wait for it.


def verify_data(data_dir: str | None = None) -> dict:
    """Locate and verify the data; small, JSON-able facts about it for the manifest."""
    dataset = data.load(data_dir)
    return {"data_dir": str(dataset.source), "sha256": dataset.sha256,
            "train_images": len(dataset.train_images), "test_images": len(dataset.test_images)}


def train(config: ModelConfig, data_dir: str | None, run,
          on_progress: Callable[["training.Progress"], None] | None = None,
          steps_per_chunk: int = 250):
    """Train (or resume) one model into ``models/<name>``, with TensorBoard summaries there
    (per-epoch scalars; images after training); returns that directory. In a store, each
    epoch is uploaded as it is committed: the checkpoint, then ``state.json``."""
    from vae_model import training
    from vae_model.results.tensorboard import EpochSummaries

    dataset = data.load(data_dir)
    config.validate(len(dataset.train_images))
    target = model_dir(store.location(run), config.name)
    with store.mirrored(target) as mirror:
        directory = ensure_writable(mirror.local)

        def commit(entry: dict) -> None:
            summaries(entry)  # flushed: its events go up with the epoch
            mirror.push(last=(STATE_FILE,), delete=True)  # older epochs go, as on a disk

        with EpochSummaries(directory) as summaries:
            result = training.fit(config, dataset.train_images, dataset.test_images, directory,
                                  steps_per_chunk=steps_per_chunk, on_progress=on_progress,
                                  on_epoch=commit)
            if len(result.history) > result.resumed_from_epoch:  # trained at least one epoch
                summaries.images(result.model, dataset.test_images, config.seed,
                                 result.history[-1]["epoch"])
        mirror.push(last=(STATE_FILE,))
    return target


def evaluate(checkpoint_dir: str | os.PathLike, data_dir: str | None, iwae_k: int = 100,
             gradient_draws: int = 100, seed: int | None = None) -> Path:
    """Held-out -ELBO (analytic KL for every model), IWAE-k NLL, for 2-D latents the reference
    NLL (numerical integration), each with its standard error over test images, and the
    gradient variance of both estimators at the trained weights. Writes ``per_image.csv``
    (one row per test image) and then ``evaluation.json`` beside the model."""
    require_positive_int("iwae_k", iwae_k)  # before the model and data are loaded
    target = store.location(checkpoint_dir)
    with store.mirrored(target) as mirror:
        path = _evaluate(mirror.local, data_dir, iwae_k, gradient_draws, seed)
        mirror.push(last=(EVALUATION_FILE,))
    return target / path.name


def _evaluate(checkpoint_dir: Path, data_dir, iwae_k: int, gradient_draws: int,
              seed: int | None) -> Path:
    from vae_model import training
    from vae_model.evaluation import heldout as evaluation

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
    from vae_model.runs.provenance import code_version
    return storage.write_json(checkpoint_dir / EVALUATION_FILE, {
        "heldout": heldout, "gradient_variance": variance, "timings": timings,
        "code": code_version()})


def render_figures(checkpoint_dirs: list[str], data_dir: str | None, run,
                   seed: int = 0, all_models: bool = False, margin: float = DEFAULT_MARGIN,
                   pilot: dict | None = None) -> list:
    """The run's figures (see :mod:`.results.figures`): image figures for the lowest seed of
    each configuration and estimator, or for every model with ``all_models``; ``margin``: the
    equivalence margin drawn in the differences figure, ``pilot``: its two-stage plan's."""
    run = store.location(run)
    models = [store.relative(store.location(d), run) for d in checkpoint_dirs]
    with store.mirrored(run, pull=tuple(models)) as mirror:
        drawn = _render(models, data_dir, mirror.local, seed, all_models, margin, pilot)
        mirror.push(under="figures", delete=True)
    return [run / store.relative(p, mirror.local) for p in drawn]


def _render(models: list[str], data_dir, run: Path, seed: int, all_models: bool,
            margin: float, pilot: dict | None) -> list[Path]:
    from vae_model import training
    from vae_model.results import figures  # matplotlib only where figures are drawn

    dataset = data.load(data_dir)
    records, directories = {}, {}
    for directory in (run / m for m in models):
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
        test_labels=dataset.test_labels, seed=seed, all_models=all_models, margin=margin,
        pilot=pilot)
