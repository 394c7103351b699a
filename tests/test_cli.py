import pytest

from flows.cli.command import main


@pytest.mark.parametrize("argv", [[], ["run"], ["rerun"], ["serve"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--help"])
    assert exit_.value.code == 0
    assert "usage: vae-pipeline" in capsys.readouterr().out


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
])
def test_bad_parameters_get_one_line_and_exit_2(args, message, capsys, tmp_path):
    code = main(["run", "--artifacts-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and err.startswith("vae-pipeline: error:")
    assert not any(tmp_path.iterdir())


def test_unknown_choice_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--estimators", "exact"])
    assert exit_.value.code == 2
    assert "invalid choice: 'exact'" in capsys.readouterr().err


def test_rerun_of_a_missing_run_says_so(capsys, tmp_path):
    code = main(["rerun", "figures", "--run-id", "nope", "--artifacts-dir", str(tmp_path)])
    assert code == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_rerun_of_a_failed_run_names_the_failed_stage(capsys, tmp_path):
    from vae_model.runs import storage
    run = tmp_path / "runs" / "broken"
    storage.write_json(run / "manifest.json", {"run_id": "broken", "status": "failed",
                                               "stage": "train-analytic-s0",
                                               "error": "-ELBO became nan"})
    code = main(["rerun", "report", "--run-id", "broken", "--artifacts-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "run broken failed at stage train-analytic-s0 (-ELBO became nan)" in err
    assert "vae-pipeline run --run-id broken" in err


def test_ctrl_c_inside_pydantic_is_an_interruption_not_a_traceback(monkeypatch, capsys, tmp_path):
    """Prefect validates its settings with pydantic while it is imported; a Ctrl-C landing in
    pydantic's compiled core comes back as a PydanticSerializationError naming it."""
    import pydantic

    from flows.cli import command as cli

    class Settings(pydantic.BaseModel):
        @pydantic.model_serializer(mode="wrap")
        def _ser_model(self, handler):
            raise KeyboardInterrupt()

    def importing_prefect(args, cleanup):
        Settings().model_dump()
    monkeypatch.setattr(cli, "before_flow", importing_prefect)
    assert main(["run", "--artifacts-dir", str(tmp_path)]) == 130
    assert capsys.readouterr().err == (
        "vae-pipeline: interrupted; rerun with the same --run-id to resume\n")


def test_only_the_command_line_freezes_the_garbage_collector(tmp_path, capsys):
    # The command line freezes Python's objects before exiting (its final collections took
    # ~2.5 s); a caller of main(argv), a notebook or a test, keeps a collector that collects.
    import gc

    before = gc.get_freeze_count()
    assert main(["runs", "--artifacts-dir", str(tmp_path)]) == 0
    assert gc.get_freeze_count() == before


def test_the_command_line_checks_its_flags_with_the_flows_own_parameter_types():
    import typing

    from flows.parameters import UNCHECKED_BY_MODELS
    from flows.pipeline import vae_pipeline
    declared = typing.get_type_hints(vae_pipeline.fn, include_extras=True)
    assert {name: declared[name] for name in UNCHECKED_BY_MODELS} == UNCHECKED_BY_MODELS
