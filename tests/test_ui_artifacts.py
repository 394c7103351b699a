"""What the Prefect UI shows, fetched through a real server's API after two runs of one
configuration: the report artifact holds its figures as decodable inline PNGs, a run's artifacts
stay within the byte budget, no artifact points at a file:// URL, and the history of the second
run lists the first (index.html too). Uses the canonical data; skipped where it is missing. The
server (conftest's real_server) is test_server's too: the two runs are picked out by their
artifacts directory."""

import base64
import io
import json
import re
import subprocess

import pytest
from PIL import Image

from tasks import publish
from tests.helpers.data import require_real_data
from tests.helpers.servers import BIN, ROOT, post

pytestmark = pytest.mark.integration
TINY = ["--epochs", "1", "--train-limit", "1024", "--iwae-k", "2", "--gradient-draws", "2",
        "--seeds", "0", "1"]
DATA_URI = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


@pytest.fixture(scope="module")
def two_runs(request, tmp_path_factory):
    require_real_data()  # before the server starts
    api, env = request.getfixturevalue("real_server")
    artifacts = tmp_path_factory.mktemp("ui") / "artifacts"
    for _ in range(2):
        done = subprocess.run([BIN / "vae-pipeline", "run", *TINY, "--artifacts-dir",
                               str(artifacts)], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    flow_runs = [r for r in post(api, "/flow_runs/filter", {"sort": "EXPECTED_START_TIME_ASC"})
                 if r["parameters"].get("artifacts_dir") == str(artifacts)]
    assert [r["state"]["type"] for r in flow_runs] == ["COMPLETED", "COMPLETED"]
    per_run = [{a["key"]: a for a in post(api, "/artifacts/filter", {
        "artifacts": {"flow_run_id": {"any_": [r["id"]]}}})} for r in flow_runs]
    return artifacts, per_run


def test_the_report_artifact_shows_every_figure_as_an_inline_png(two_runs):
    artifacts, per_run = two_runs
    report = per_run[-1]["vae-report"]
    assert report["type"] == "markdown"
    encoded = DATA_URI.findall(report["data"])
    run_dir = sorted((artifacts / "runs").iterdir())[-1]
    figures = list((run_dir / "figures").glob("*.png"))
    assert figures and len(encoded) == len(figures)
    for data in encoded:
        with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as image:
            image.verify()
            assert image.format == "PNG" and image.width <= publish.PREVIEW_WIDTHS[0]
    assert "Per estimator" in report["data"] and run_dir.name in report["data"]


def test_a_run_stores_at_most_the_budget_and_no_file_links(two_runs):
    _, per_run = two_runs
    for artifacts in per_run:
        assert {"vae-report", "vae-run-summary", "vae-estimator-comparison",
                "vae-history"} <= set(artifacts)
        sizes = {key: len(json.dumps(a["data"]).encode()) for key, a in artifacts.items()}
        assert sum(sizes.values()) <= publish.RUN_BUDGET, sizes
        assert not any("file://" in json.dumps(a["data"]) for a in artifacts.values())
        assert all(a["type"] != "link" for a in artifacts.values())


def test_the_history_lists_the_earlier_run(two_runs):
    artifacts, per_run = two_runs
    first, second = sorted(p.name for p in (artifacts / "runs").iterdir())
    history = per_run[-1]["vae-history"]["data"]
    assert first in history and second in history
    assert history.index(second) < history.index(first)  # newest first
    assert "within seed noise" in history  # fixed seeds: the same numbers again
    assert len(DATA_URI.findall(history)) == 1  # the trend figure
    assert second not in per_run[0]["vae-history"]["data"]  # a run lists only earlier runs
    index = (artifacts / "index.html").read_text()
    assert index.index(second) < index.index(first)
    assert f"runs/{first}/report.html" in index and f"runs/{second}/report.html" in index
