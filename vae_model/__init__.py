"""Variational autoencoders on Fashion-MNIST with TensorFlow Probability.

Plain TensorFlow/TFP, no Prefect: usable from a notebook. The modules, one concern each:
``config`` (validated settings), ``data`` (canonical IDX files, verified), ``networks``,
``objectives`` (one function per KL estimator), ``training`` (compiled, chunked, resumable),
``evaluation`` (held-out -ELBO, IWAE bound, gradient variance), ``figures`` and ``report``.
"""

import os

# tf_keras (Keras 2) is what TFP 0.25 supports; this must be set before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TF's C++ log otherwise reports a missing CUDA driver as an error on every CPU-only start.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class UserInputError(ValueError):
    """A problem the user can fix (bad parameter, bad data file); its message is one line."""
