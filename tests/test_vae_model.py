"""The vae_model package itself: importing it pools TensorFlow's CPU memory (a user's own
allocator setting kept), and none of it imports Prefect."""

import os
import subprocess
import sys

import pytest

ALLOCATOR_PROBE = """
import os, vae_model, tensorflow as tf
print(os.environ["TF_CPU_ALLOCATOR_USE_BFC"])
tf.matmul(tf.ones([512, 512]), tf.ones([512, 512]))
print(tf.config.experimental.get_memory_info("CPU:0")["peak"] > 0)
"""


def _allocator_probe(setting):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    if setting is not None:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = setting
    code = ALLOCATOR_PROBE if setting is None else ALLOCATOR_PROBE.split("tf.matmul")[0]
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.split()


def test_importing_vae_model_pools_tensorflows_cpu_memory():
    # the default allocator faulted fresh memory in on every large tensor; BFC keeps and reuses it
    assert _allocator_probe(None) == ["true", "True"]


@pytest.mark.parametrize("setting", ["false", "true", "0"])
def test_a_users_allocator_setting_is_kept(setting):
    # only the setting is the project's to keep: how TensorFlow's other allocator reports
    # its memory varies by processor
    assert _allocator_probe(setting) == [setting]


def test_vae_model_does_not_import_prefect():
    code = ("import sys, vae_model.results.figures, vae_model.results.model_figures, "
            "vae_model.results.report, vae_model.stages, vae_model.training; "
            "print('prefect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
