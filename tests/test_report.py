"""The report of made-up runs (nothing trained): the verdict first, a row per configuration,
comparison.csv, standard errors or a dash, a size that stays bounded for a sweep; only the
figures that exist; no manifest for a broken run; the ``latest`` link."""

import re
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import fake_runs
from tests.helpers.fake_runs import DEFAULT_RUN, ISSUE_13_SWEEP
from vae_model import UserInputError
from vae_model.results import figures, report
from vae_model.runs import storage
from vae_model.runs.directory import run_dir


def _write_run(tmp_path, configs, extras=True):
    run = tmp_path / "run"
    directories = fake_runs.write_model_dirs(run, configs, extras)
    report.write_report(run, directories, {"seeds": [0]}, {"data_dir": "d", "sha256": {}},
                        [str(run / "figures" / f"{k}.png") for k in figures.FIGURES], {})
    return run


def test_report_opens_with_the_verdict_and_a_row_per_configuration(tmp_path):
    run = _write_run(tmp_path, ISSUE_13_SWEEP)
    lines = (run / "report.md").read_text().splitlines()
    assert lines[0].startswith("# VAE run") and lines[2].startswith("**Verdict: ")
    assert lines[4].startswith("| Configuration | analytic KL −ELBO | Monte-Carlo KL −ELBO | Δ")
    assert len([line for line in lines[6:] if line.startswith("|")][:8]) == 8
    html = (run / "report.html").read_text()
    assert html.index("Verdict") < html.index("<table")


def test_comparison_csv_has_a_row_per_model_with_seed_and_standard_errors(tmp_path):
    table = pd.read_csv(_write_run(tmp_path, DEFAULT_RUN) / "comparison.csv")
    assert len(table) == 6 and sorted(table["seed"]) == [0, 0, 1, 1, 2, 2]
    assert table["heldout_neg_elbo_stderr"].notna().all()


def test_missing_standard_errors_show_as_a_dash(tmp_path):
    text = (_write_run(tmp_path, DEFAULT_RUN, extras=False) / "report.md").read_text()
    per_model = text[text.index("## Per model"):]
    assert re.search(r"\| analytic-s0 \| \d+\.\d\d \| ", per_model)  # no "±" without one
    assert "| – |" in text  # per-seed standard error without per_image.csv


def test_report_size_of_a_16_model_sweep_stays_near_the_default_runs(tmp_path):
    default = _write_run(tmp_path / "a", DEFAULT_RUN)
    sweep = _write_run(tmp_path / "b", ISSUE_13_SWEEP)
    for name in ("report.md", "report.html"):
        assert (sweep / name).stat().st_size <= 3 * (default / name).stat().st_size, name


def test_report_names_only_figures_that_exist_and_refuses_a_manifest_for_a_broken_run(
        tmp_path):
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


def test_mark_latest_points_at_the_run(tmp_path):
    target = run_dir(tmp_path, "r1")
    target.mkdir(parents=True)
    link = report.mark_latest(tmp_path, target)
    assert link.resolve() == target
    report.mark_latest(tmp_path, target)  # replacing is fine
