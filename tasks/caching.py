"""Cache keys: a task's inputs, its own source, the source of the ``vae_model`` modules it runs,
the content of the model files its path inputs point at (so that a retrained model invalidates
its evaluation and figures while unchanged stages come back Cached), and a token that changes
when the files the stage wrote are deleted or modified (:mod:`tasks.outputs`)."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import threading
from pathlib import Path

from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy

import vae_model
from tasks import outputs
from vae_model.runs import store

MODEL_STATE = "state.json"  # a model directory changes exactly when this file does
_PACKAGE_DIR = Path(vae_model.__file__).parent

# CPython 3.11's parser is not thread-safe: two stages computing their keys at once (the first
# evaluations) now and then failed with "AST constructor recursion depth mismatch", and Prefect
# then ran the stage with no cache key, so it never came back Cached.
_PARSING = threading.Lock()

# ``stages`` holds every stage's function and imports each stage's modules inside it: following
# its imports would make a figure change retrain the models.
_NOT_FOLLOWED = ("stages",)


def _source_file(module: str) -> Path | None:
    """The file of ``module``, dotted below vae_model (``model.data``, or a subpackage such as
    ``training``: its ``__init__.py``); None if there is no such module."""
    base = _PACKAGE_DIR.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def vae_model_imports(module: str) -> set[str]:
    """The ``vae_model`` modules that ``module``'s source imports, at any depth of its code."""
    found = set()
    with _PARSING:
        tree = ast.parse(_source_file(module).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.removeprefix("vae_model.") for alias in node.names
                      if alias.name.startswith("vae_model.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module + ".").startswith("vae_model."):
            parent = node.module.removeprefix("vae_model").lstrip(".")
            for alias in node.names:  # a submodule, or a name defined in the parent module
                child = f"{parent}.{alias.name}".lstrip(".")
                found.add(child if _source_file(child) else parent)
    return {name for name in found if name and _source_file(name)}


@functools.cache
def source_hash(*modules: str) -> str:
    """SHA-256 over the source of ``modules`` and every vae_model module they import, so a
    stage's cache follows the code it runs, however that code is split into modules."""
    closure, todo = set(), list(modules)
    while todo:
        module = todo.pop()
        if module not in closure:
            closure.add(module)
            if module not in _NOT_FOLLOWED:
                todo.extend(vae_model_imports(module))
    digest = hashlib.sha256()
    for module in sorted(closure):
        digest.update(module.encode() + _source_file(module).read_bytes())
    return digest.hexdigest()


def _path_strings(value):
    if isinstance(value, str) and (value.startswith("/") or store.is_url(value)):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _path_strings(item)


def files_fingerprint(parameters: dict) -> str:
    """The content of the files a task's path inputs name (a model directory: its state.json),
    by SHA-256 on a disk and ETag in a store; a missing one counts as such, so that it is a
    cache miss, never skipped."""
    digest = hashlib.sha256()
    for value in _path_strings(list(parameters.values())):
        path = store.location(value)
        file = path / MODEL_STATE if path.is_dir() else path
        digest.update(str(file).encode() + json.dumps(store.fingerprint(file)).encode())
    return digest.hexdigest()


def policy(*modules: str):
    """INPUTS + TASK_SOURCE + the named vae_model modules' source + path inputs' content +
    the token of the stage's recorded outputs."""
    def key(context, parameters):
        base = source_hash(*modules) + files_fingerprint(parameters)
        identity = "".join(filter(None, (INPUTS.compute_key(context, parameters, {}),
                                         TASK_SOURCE.compute_key(context, parameters, {}), base)))
        return base + outputs.token(context, parameters, identity)
    return INPUTS + TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=key)


def results_beside(artifacts_dir: str, *tasks) -> tuple:
    """``tasks`` with their cached results kept beside the runs when those live in an object
    store (``<root>/.prefect-results``), so that every machine finds them; else as they are
    (Prefect's local result storage)."""
    root = store.location(artifacts_dir)
    if not store.is_remote(root):
        return tasks
    from prefect.filesystems import RemoteFileSystem

    # Prefect wants the block saved on the server; it names a place, no credentials
    block = RemoteFileSystem(basepath=f"{root}/.prefect-results")
    block.save(f"vae-results-{hashlib.sha256(str(root).encode()).hexdigest()[:16]}",
               overwrite=True)
    return tuple(task.with_options(result_storage=block) for task in tasks)
