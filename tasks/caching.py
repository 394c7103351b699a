"""Cache keys: a task's inputs, its own source, the source of the ``vae_model`` modules it runs,
the content of the model files its path inputs point at (so that a retrained model invalidates
its evaluation and figures while unchanged stages come back Cached), and a token that changes
when the files the stage wrote are deleted or modified (:mod:`tasks.outputs`)."""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy

import vae_model
from tasks import outputs

MODEL_STATE = "state.json"  # a model directory changes exactly when this file does
_PACKAGE_DIR = Path(vae_model.__file__).parent


# ``run`` holds every stage's function and imports each stage's modules inside it: following
# its imports would make a figure change retrain the models.
_NOT_FOLLOWED = ("run",)
_IMPORT = re.compile(r"^[ \t]*from vae_model(?:\.(\w+))? import (?:\(([\w,\s]+)\)|([\w, \t]+))|"
                     r"^[ \t]*import vae_model\.(\w+)", re.MULTILINE)


def vae_model_imports(module: str) -> set[str]:
    """The ``vae_model`` modules that ``module``'s source imports, at any depth of its code."""
    found = set()
    source = (_PACKAGE_DIR / f"{module}.py").read_text()
    for submodule, grouped, names, plain in _IMPORT.findall(source):
        named = submodule or plain
        candidates = [named] if named else [n.strip() for n in (grouped or names).split(",")]
        found |= {c for c in candidates if c and (_PACKAGE_DIR / f"{c}.py").is_file()}
    return found


@functools.cache
def code_version(*modules: str) -> str:
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
        digest.update(module.encode() + (_PACKAGE_DIR / f"{module}.py").read_bytes())
    return digest.hexdigest()


def _path_strings(value):
    if isinstance(value, str) and value.startswith("/"):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _path_strings(item)


def files_fingerprint(parameters: dict) -> str:
    digest = hashlib.sha256()
    for value in _path_strings(list(parameters.values())):
        path = Path(value)
        file = path / MODEL_STATE if path.is_dir() else path
        if file.is_file():
            digest.update(str(file).encode() + file.read_bytes())
    return digest.hexdigest()


def policy(*modules: str):
    """INPUTS + TASK_SOURCE + the named vae_model modules' source + path inputs' content +
    the token of the stage's recorded outputs."""
    def key(context, parameters):
        base = code_version(*modules) + files_fingerprint(parameters)
        identity = "".join(filter(None, (INPUTS.compute_key(context, parameters, {}),
                                         TASK_SOURCE.compute_key(context, parameters, {}), base)))
        return base + outputs.token(context, parameters, identity)
    return INPUTS + TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=key)
