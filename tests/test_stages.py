"""vae_model's stages over paths, without Prefect: both estimators of a tiny model trained,
evaluated, drawn and reported; the figures, metrics.json, comparison.csv, the report and the
manifest that run leaves."""

import struct

import pytest

from tests.helpers.data import write_tiny_dataset
from vae_model import stages
from vae_model.model import data
from vae_model.model.config import ModelConfig
from vae_model.results import report
from vae_model.runs import storage
from vae_model.runs.directory import run_dir

IMAGE_KINDS = ("reconstructions", "generations", "latent", "manifold")
RUN_KINDS = ("curves", "scores", "differences", "gradient-variance")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """Both estimators of a tiny model trained, evaluated, drawn and reported, through
    vae_model alone (more seeds and configurations: test_figures and test_report, with made-up
    runs)."""
    root = tmp_path_factory.mktemp("artifacts")
    directory = tmp_path_factory.mktemp("data")
    original = data.CANONICAL
    data.CANONICAL = write_tiny_dataset(directory)
    try:
        path = run_dir(root, "test-run")
        checkpoints = [str(stages.train(ModelConfig(estimator=e, batch_size=32, epochs=2),
                                     str(directory), path)) for e in ("analytic", "monte_carlo")]
        for checkpoint in checkpoints:
            stages.evaluate(checkpoint, str(directory), iwae_k=10, gradient_draws=5)
        figures = [str(p) for p in stages.render_figures(checkpoints, str(directory), path)]
        facts = stages.verify_data(str(directory))
        report.write_report(path, checkpoints, {"epochs": 2}, facts, figures, {})
    finally:
        data.CANONICAL = original
    return path, figures


def png_size(path):
    header = open(path, "rb").read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_one_figure_per_kind_and_no_per_model_files_by_default(finished_run):
    path, figures = finished_run
    names = sorted(p.split("/")[-1] for p in figures)
    assert names == sorted(f"{kind}.png" for kind in RUN_KINDS + IMAGE_KINDS)
    assert sorted(p.name for p in (path / "figures").glob("*.png")) == names
    for figure in figures:
        width, height = png_size(figure)
        assert 400 <= width <= 1400 and 150 <= height <= 1800, (figure, width, height)


def test_metrics_follow_the_contract(finished_run):
    path, _ = finished_run
    metrics = storage.read_json(path / "metrics.json")
    assert set(metrics["models"]) == {"analytic-s0", "monte_carlo-s0"}
    for name, model in metrics["models"].items():
        assert name.startswith(model["estimator"]) and name.endswith(f"-s{model['seed']}")
        assert set(model["heldout"]) >= {"neg_elbo", "kl", "reconstruction", "iwae_nll", "iwae_k"}
        assert model["heldout"]["iwae_k"] == 10
        assert [h["epoch"] for h in model["history"]] == [1, 2]
        assert set(model["gradient_variance"]) == {"analytic", "monte_carlo"}
        assert model["configuration"]["latent_size"] == model["latent_size"] == 2
    comparison = metrics["comparison"]
    assert len(comparison["configurations"]) == 1
    pair = comparison["paired"][0]
    assert pair["seeds"] == [0]
    assert all(s["per_image_stderr"] is not None for s in pair["per_seed"])  # per_image.csv read


def test_comparison_csv_report_and_manifest(finished_run):
    import pandas as pd
    path, figures = finished_run
    table = pd.read_csv(path / "comparison.csv")
    assert sorted(table["model"]) == ["analytic-s0", "monte_carlo-s0"]
    assert {"seed", "heldout_neg_elbo", "heldout_neg_elbo_stderr", "iwae_nll",
            "grad_var_monte_carlo"} <= set(table.columns)
    text = (path / "report.md").read_text()
    assert text.splitlines()[2].startswith("**Verdict: ")
    for figure in figures:
        assert f"(figures/{figure.split('/')[-1]})" in text
    assert "seed 0" in text  # which models the image figures show
    html = (path / "report.html").read_text()
    assert html.count("<img") == len(figures)
    manifest = storage.read_json(path / "manifest.json")
    assert manifest["status"] == "complete"
    assert manifest["packages"]["tensorflow"] and manifest["data"]["sha256"]
    # the processor: another instruction set trains other weights from the same seed
    from vae_model.runs import provenance
    assert manifest["processor"] == provenance.processor() and manifest["processor"]["cores"] >= 1
    assert f"## Machine\n\n{provenance.describe(manifest['processor'])}; " in text
