"""The command line (flows.cli.command): bad parameters are one line and exit 2 before any
work; a rerun of a missing or failed run says what to do."""

import pytest

from flows.cli.command import main
from vae_model.runs import storage


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "epochs must be a whole number > 0"),
    (["--batch-size", "-4"], "batch_size must be"),
    (["--latent-size", "0"], "latent_size must be"),
    (["--learning-rate", "nan"], "learning_rate must be a finite number"),
    (["--learning-rate", "inf"], "learning_rate must be a finite number"),
    (["--iwae-k", "0"], "--iwae-k must be > 0, got 0"),
    (["--gradient-draws", "1"], "--gradient-draws must be >= 2, got 1"),
    (["--seeds", "0", "-1"], "--seeds must be >= 0, got -1"),
    (["--run-id", "../../etc"], "run id '../../etc' is not allowed"),
    (["--train-limit", "0"], "train_limit must be"),
    (["--concurrency", "0"], "--concurrency must be > 0"),
    (["--batch-size", "100000"], "larger than the 60000 training images"),
    (["--data-dir", "/nonexistent"], "data directory /nonexistent does not exist"),
    (["--seeds", "4", "--until-decided"], "--until-decided needs at least 2 pilot seeds, got 1"),
    (["--estimators", "analytic", "--until-decided"], "--until-decided compares two estimators"),
    (["--seeds", "0-9", "--until-decided", "--max-seeds", "5"],
     "--max-seeds 5 is fewer than the 10 pilot seeds"),
    (["--max-seeds", "0"], "--max-seeds must be > 0, got 0"),
])
def test_bad_parameters_get_one_line_and_exit_2(args, message, capsys, tmp_path):
    code = main(["run", "--artifacts-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and err.startswith("vae-pipeline: error:")
    assert not any(tmp_path.iterdir())


def test_rerun_of_a_missing_run_says_so(capsys, tmp_path):
    code = main(["rerun", "figures", "--run-id", "nope", "--artifacts-dir", str(tmp_path)])
    assert code == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_rerun_of_a_failed_run_names_the_failed_stage(capsys, tmp_path):
    run = tmp_path / "runs" / "broken"
    storage.write_json(run / "manifest.json", {"run_id": "broken", "status": "failed",
                                               "stage": "train-analytic-s0",
                                               "error": "-ELBO became nan"})
    code = main(["rerun", "report", "--run-id", "broken", "--artifacts-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "run broken failed at stage train-analytic-s0 (-ELBO became nan)" in err
    assert "vae-pipeline run --run-id broken" in err


def test_a_plan_once_made_refuses_another_margin_before_any_work(capsys, tmp_path):
    run = tmp_path / "runs" / "decided"
    manifest = {"run_id": "decided", "status": "complete", "models": {}}
    storage.write_json(run / "manifest.json", manifest)
    storage.write_json(run / "plan.json", {"seeds": [0, 1, 2, 3, 4], "equivalence_margin": 1.0,
                                           "max_seeds": 50})
    for extra in (["--until-decided", "--equivalence-margin", "0.5"], []):
        code = main(["run", "--artifacts-dir", str(tmp_path), "--run-id", "decided", "--seeds",
                     "0-4", *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1
        assert ("this run's plan was made with --seeds 0-4 --equivalence-margin 1 --max-seeds "
                "50; a plan is fixed") in err
    assert storage.read_json(run / "manifest.json") == manifest  # nothing recorded
