"""A Prefect server backed by PostgreSQL (Debian's, installed by the test command where apt
is available) running the tiny flow."""

import subprocess

import httpx
import pytest

from tests.helpers.data import require_real_data
from tests.helpers.servers import BIN, ROOT, postgres, postgres_binaries, prefect_server

pytestmark = pytest.mark.integration


def test_tiny_flow_on_a_postgres_backed_server(tmp_path):
    if postgres_binaries() is None:
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql)")
    require_real_data()
    home = tmp_path / "prefect"
    home.mkdir()
    with postgres() as (url, (binaries, port)):
        with prefect_server(home, {"PREFECT_API_DATABASE_CONNECTION_URL": url}) as (api, env):
            result = subprocess.run(
                [BIN / "vae-pipeline", "run", "--epochs", "1", "--train-limit", "1024",
                 "--iwae-k", "2", "--gradient-draws", "2", "--seeds", "0", "--run-id", "pg",
                 "--artifacts-dir", str(tmp_path / "artifacts")],
                env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, result.stderr[-3000:]
            runs = httpx.post(f"{api}/flow_runs/filter", json={}, timeout=30).json()
            assert [r["state"]["type"] for r in runs] == ["COMPLETED"]
        stored = subprocess.run(
            [binaries / "psql", "-h", "127.0.0.1", "-p", str(port), "-U", "prefect", "-tAc",
             "select count(*) from flow_run where state_type = 'COMPLETED'", "prefect"],
            capture_output=True, text=True, timeout=60)
        assert stored.stdout.strip() == "1", stored.stderr
