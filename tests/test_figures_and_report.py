import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_tiny_dataset
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
    vae_model alone (more seeds and configurations: test_figure_layout, with made-up runs)."""
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


def test_vae_model_does_not_import_prefect():
    code = ("import sys, vae_model.results.figures, vae_model.results.model_figures, "
            "vae_model.results.report, vae_model.stages, vae_model.training; "
            "print('prefect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("run_id", ["../evil", "a/b", "", ".hidden", "x" * 101, "a..b"])
def test_run_ids_cannot_escape_the_artifacts_root(tmp_path, run_id):
    with pytest.raises(Exception, match="not allowed|outside"):
        run_dir(tmp_path, run_id)


def test_mark_latest_points_at_the_run(tmp_path):
    target = run_dir(tmp_path, "r1")
    target.mkdir(parents=True)
    link = report.mark_latest(tmp_path, target)
    assert link.resolve() == target
    report.mark_latest(tmp_path, target)  # replacing is fine



def test_report_names_only_figures_that_exist_and_refuses_a_manifest_for_a_broken_run(
        tmp_path):
    from tests import fake_runs
    from vae_model import UserInputError
    run = tmp_path / "runs" / "r"
    directories = [str(d) for d in fake_runs.write_model_dirs(run, fake_runs.configs(seeds=(0,)))]
    drawn = run / "figures" / "curves.png"
    storage.write_bytes(drawn, b"png")
    gone = run / "figures" / "scores.png"  # deleted after it was drawn
    report.write_report(run, directories, {"seeds": [0]}, {}, [str(drawn), str(gone)], {})
    text = (run / "report.md").read_text()
    assert "curves.png" in text and "scores.png" not in text
    assert storage.read_json(run / "manifest.json")["status"] == "complete"

    (run / "manifest.json").unlink()
    (Path(directories[0]) / "evaluation.json").unlink()
    with pytest.raises((UserInputError, OSError)):
        report.write_report(run, directories, {"seeds": [0]}, {}, [str(drawn)], {})
    assert not (run / "manifest.json").exists()


@pytest.mark.parametrize("value, spread, shown", [
    (259.78, 0.80, "259.78 ± 0.80"),  # two decimals while the spread has two significant digits
    (6.3731, 0.00759, "6.3731 ± 0.0076"),  # smaller spreads: to their second significant digit
    (6.43, 0.0100, "6.430 ± 0.010"),
    (256.0169, 0.00423, "256.0169 ± 0.0042"),
    (1.5, 2e-9, "1.50 ± 2.0e-09"),
    (3.0, None, "3.00"),
])
def test_a_value_is_shown_to_the_precision_of_its_uncertainty(value, spread, shown):
    from vae_model.results.tables import plus_minus
    assert plus_minus(value, spread) == shown
