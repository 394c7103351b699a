"""A run directory: where it lives, what it holds, and whether it can be written.

``<artifacts>/runs/<run-id>/`` holds ``models/<model>/`` (checkpoints, ``evaluation.json``,
``per_image.csv``), ``figures/*.png``, and, written last by :mod:`vae_model.results.report`,
``metrics.json``, ``comparison.csv``, ``report.md``/``report.html`` and ``manifest.json``
(whose ``status`` says whether the run is complete).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vae_model import UserInputError
from vae_model.runs import storage, store

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
EVALUATION_FILE = "evaluation.json"
PLAN_FILE = "plan.json"  # a two-stage plan's settings, written when the plan is made
PER_IMAGE_FILE = "per_image.csv"


def check_run_id(run_id: str) -> str:
    """``run_id``, if it names a directory inside the runs folder (else a UserInputError)."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id) or ".." in run_id:
        raise UserInputError(f"run id {run_id!r} is not allowed: use letters, digits, '.', '_' "
                             "and '-' (at most 100, no '..'), e.g. 2026-11-23-nightly")
    return run_id


def run_dir(artifacts_root: str | os.PathLike, run_id: str):
    """``<root>/runs/<run_id>`` (a local ``Path``, or a ``UPath`` in an object store), refusing
    ids that could escape the artifacts root."""
    check_run_id(run_id)
    root = store.location(artifacts_root)
    if store.is_remote(root):
        return root / "runs" / run_id  # the id's pattern already keeps it below the root
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


def recorded_plan(run: Path) -> dict | None:
    """The settings of the two-stage plan made for ``run`` (its plan.json), or None if no plan
    was made there."""
    path = run / PLAN_FILE
    return storage.read_json(path) if path.exists() else None


def ensure_writable(directory: Path) -> Path:
    """Fail now, with the fix, rather than after training when the first file is written."""
    if store.is_remote(directory):
        store.check(directory)
        probe = directory / ".write-check"
        try:
            storage.write_text(probe, "ok\n")
            probe.fs.rm_file(probe.path)
        except PermissionError:
            raise UserInputError(f"the object store refuses writes to {directory}: use "
                                 "credentials that may write there, or another --artifacts-dir"
                                 ) from None
        return directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        storage.write_text(directory / ".write-check", "ok\n").unlink()
    except OSError as err:
        raise UserInputError(f"cannot write to {directory} ({err.strerror}): free disk space, "
                             "fix its permissions or pass another --artifacts-dir") from None
    return directory


def model_dir(run: Path, model_name: str) -> Path:
    return run / "models" / model_name
