"""The Dask sweep: a small grid on a local distributed cluster of two worker processes, on the
canonical data (workers are separate processes, so they read the real files)."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flows.sweep import dask_runner
from tests.helpers.data import require_real_data
from vae_model.runs import storage

ROOT = Path(__file__).resolve().parents[1]


def test_dask_runner_uses_a_given_scheduler_or_a_two_worker_local_cluster():
    assert dask_runner("tcp://127.0.0.1:8786").address == "tcp://127.0.0.1:8786"
    local = dask_runner()
    assert local.address is None and local.cluster_kwargs["n_workers"] == 2
    assert local.cluster_kwargs["processes"] is True


@pytest.mark.integration
def test_small_grid_on_a_local_cluster(tmp_path):
    require_real_data()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    result = subprocess.run(
        [Path(sys.executable).parent / "vae-pipeline", "sweep", "--seeds", "0", "1",
         "--latent-sizes", "2", "3", "--estimators", "analytic", "--epochs", "1",
         "--train-limit", "1024", "--iwae-k", "3", "--gradient-draws", "2", "--run-id", "grid",
         "--artifacts-dir", str(tmp_path / "artifacts")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "LocalCluster" in result.stderr + result.stdout
    run = tmp_path / "artifacts" / "runs" / "grid"
    table = pd.read_csv(run / "comparison.csv")
    assert sorted(table["model"]) == ["analytic-s0", "analytic-s1", "analytic-z3-s0",
                                      "analytic-z3-s1"]
    assert set(table["latent_size"]) == {2, 3}
    assert storage.read_json(run / "manifest.json")["status"] == "complete"
    assert (run / "figures" / "scores.png").exists()
    assert not (run / "figures" / "manifold-analytic-z3.png").exists()  # 2-D latents only
