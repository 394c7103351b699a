"""A stage is Cached only while the files it wrote are there, unchanged.

Prefect returns a cached result (a list of paths, here) without looking at the files it names.
So each cached stage records, when its result is committed, the SHA-256 of every file it wrote
in ``<run>/.stages/<id>.json``, where ``id`` identifies the computation (inputs, code, content of
the files read). The record also holds a random *token* that is part of the stage's cache key
(see :mod:`tasks.caching`): while the recorded files are intact the key repeats and Prefect's
cache hits; when one is missing or changed a new token makes the key new, the stage runs, and
its new result is recorded under the new token. What reads the rerun stage's outputs keys on
their content (``files_fingerprint``), so it reruns too; nothing else does. The check runs when
the key is computed, after the stage's inputs are resolved, so it also sees what an upstream
stage rewrote in the same flow run.

A stage that reruns because its *recorded* outputs changed first deletes what is left of them:
training resumes from whatever checkpoint it finds, so a modified checkpoint must not be resumed
from, and a model trained further under other settings must not be taken for this one. A stage
that never finished (no record: killed, failed) keeps its files, so training still resumes.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import hashlib
import threading
import uuid
from pathlib import Path

from vae_model.runs import storage, store
from vae_model.runs.directory import EVALUATION_FILE, PER_IMAGE_FILE

RECORDS_DIR = ".stages"
MODEL_STATE = "state.json"
# Files a stage writes beside the path it returns (a stage returns one path per output set).
# Not provenance.json: publish-results, which is never cached, rewrites it on every run.
SIBLINGS = {EVALUATION_FILE: (PER_IMAGE_FILE,),
            "report.md": ("report.html", "metrics.json", "comparison.csv", "manifest.json")}

# task run id -> (record, run dir, token), from the key's computation to the result's commit;
# a cache hit never commits, so the oldest entries are dropped beyond a bound.
_pending: collections.OrderedDict[str, tuple[Path, Path, str]] = collections.OrderedDict()
_pending_lock = threading.Lock()
_PENDING_BOUND = 10_000


def _location(value):
    """A path or store URL among a task's inputs, as a location; None for other strings."""
    if isinstance(value, str) and (value.startswith("/") or store.is_url(value)):
        return store.location(value)
    return None


def run_of(parameters: dict):
    """The run directory (``<root>/runs/<id>``) the first path among a task's inputs lies in."""
    stack = list(parameters.values())
    while stack:
        value = stack.pop(0)
        if isinstance(value, (list, tuple)):
            stack[:0] = value
        elif (path := _location(value)) is not None:
            for candidate in (path, *path.parents):
                if candidate.parent.name == "runs" and candidate.parent != candidate:
                    return candidate
    return None


def _files(value, run):
    """The files a stage's result stands for. A model directory is its state.json and the
    checkpoint below it, not the evaluation files that the evaluate stage writes beside them."""
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _files(item, run)
        return
    path = _location(value)
    if path is None:
        return
    if path.is_dir():
        model = (path / MODEL_STATE).is_file()
        for rel in store.files(path):
            if not model or "/" in rel or rel == MODEL_STATE:
                yield path / rel
    elif path.is_file():
        yield path
        for sibling in SIBLINGS.get(path.name, ()):
            if (path.parent / sibling).is_file():
                yield path.parent / sibling


def snapshot(value, run) -> dict:
    """{path relative to the run: fingerprint} for the files ``value`` stands for (SHA-256 and
    size on a disk, ETag and size in a store: :func:`vae_model.runs.store.fingerprint`)."""
    found = {}
    for file in _files(value, run):
        if str(file).startswith(str(run).rstrip("/") + "/"):
            found[store.relative(file, run)] = store.fingerprint(file)
    return {rel: facts for rel, facts in found.items() if facts is not None}


def changed(record: dict, run) -> list[str]:
    """The recorded files that are missing or differ from the record (all of them for a record
    that never completed)."""
    files = record.get("files")
    if not isinstance(files, dict) or not files:
        return ["(no record)"]
    return [rel for rel, facts in files.items()
            if not isinstance(facts, dict) or store.fingerprint(run / rel) != facts]


def _discard(record: dict, run) -> None:
    """Delete the recorded files still there (and the directories that leaves empty)."""
    for rel in record["files"]:
        if store.is_remote(run):
            if ".." not in rel.split("/"):  # a record is data: never let it point outside
                with contextlib.suppress(FileNotFoundError):
                    run.fs.rm_file((run / rel).path)
            continue
        path = (run / rel).resolve()
        if run not in path.parents:
            continue  # a record is data: never let it point outside its run
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        for parent in path.parents:
            if parent == run:
                break
            try:
                parent.rmdir()
            except OSError:
                break


def token(task_ctx, parameters: dict, identity: str) -> str:
    """The part of a stage's cache key that changes when its recorded outputs do. ``identity``
    identifies the computation (inputs, code, content of the files it reads)."""
    run = run_of(parameters)
    if run is None or task_ctx is None:  # not a run directory's stage: plain caching
        return ""
    run = run if store.is_remote(run) else run.resolve()
    name = getattr(task_ctx.task, "name", "task")
    digest = hashlib.sha256(identity.encode()).hexdigest()[:24]
    record_path = run / RECORDS_DIR / f"{name}-{digest}.json"
    try:
        record = storage.read_json(record_path)
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict):
        record = {}
    stale = changed(record, run)
    if not stale and record.get("token"):
        new = record["token"]
    else:
        if isinstance(record.get("files"), dict) and record["files"]:
            _discard(record, run)
        new = uuid.uuid4().hex
    with _pending_lock:
        _pending[str(task_ctx.task_run.id)] = (record_path, run, new)
        while len(_pending) > _PENDING_BOUND:
            _pending.popitem(last=False)
    hooks = task_ctx.task.on_commit_hooks
    if record_outputs not in hooks:  # the task records what it wrote when its result commits
        hooks.append(record_outputs)
    return new


def record_outputs(transaction) -> None:
    """Commit hook: record the files the stage's result names, under the token its key used.
    Runs only when a result is committed (a run, not a cache hit)."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    with _pending_lock:
        pending = _pending.pop(str(context.task_run.id), None) if context else None
    if pending is None:
        return
    record_path, run, new = pending
    staged = transaction._staged_value  # the ResultRecord about to be committed (Prefect 3.8)
    value = getattr(staged, "result", staged)
    storage.write_json(record_path, {
        "task": context.task.name, "token": new, "files": snapshot(value, run),
        "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})


record_outputs.log_on_run = False  # Prefect would log two lines per task run otherwise
