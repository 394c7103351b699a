"""Variational autoencoders on Fashion-MNIST with TensorFlow Probability.

Plain TensorFlow/TFP, no Prefect: usable from a notebook, e.g.
``from vae_model import data, training``. Subpackages by concern: ``model`` (config, data,
networks, objectives), ``training``, ``evaluation`` (held-out scores, the paired statistics),
``reference`` (the reference NLL by quadrature), ``results`` (figures, report, history) and
``runs`` (run directory, registry, lock, storage); ``stages`` runs each pipeline stage over paths.
"""

import importlib
import os

# tf_keras (Keras 2) is what TFP 0.25 supports; this must be set before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TF's C++ log otherwise reports a missing CUDA driver as an error on every CPU-only start.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow's pooling allocator, read at its first CPU allocation: the default one faults fresh
# memory in for every large tensor (docs/performance.md, "Memory").
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


class UserInputError(ValueError):
    """A problem the user can fix (bad parameter, bad data file); its message is one line."""


# `from vae_model import data` as before the subpackages; imported on first use, so that
# importing vae_model stays cheap (no TensorFlow) for the command line's one-line errors.
_SHORTCUTS = {"config": "model", "data": "model", "networks": "model", "objectives": "model"}


def __getattr__(name: str):
    if name in _SHORTCUTS:
        return importlib.import_module(f"{__name__}.{_SHORTCUTS[name]}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
