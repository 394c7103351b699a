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
# TensorFlow's default CPU allocator takes each large tensor from malloc, i.e. from a fresh mmap,
# and gives it back when freed: the reference NLL's tile products (up to ~70 MB a call) faulted
# their memory in anew every call, ~1.1 million page faults and ~5 s of system time per model
# where the kernel gives huge pages only on request (THP "madvise"), and more with two models at
# once. The BFC allocator keeps and reuses what it took: ~11,000 faults, the same numbers.
# (Read when TensorFlow first allocates on the CPU, so this too must come before.)
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


class UserInputError(ValueError):
    """A problem the user can fix (bad parameter, bad data file); its message is one line."""
