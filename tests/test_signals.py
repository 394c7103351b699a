"""Signals and exit (flows.cli.signals): a Ctrl-C reworded by pydantic is an interruption,
and only the command line's own process freezes the garbage collector before exiting."""

import gc

import pydantic

from flows.cli import command as cli
from flows.cli.command import main


def test_ctrl_c_inside_pydantic_is_an_interruption_not_a_traceback(monkeypatch, capsys, tmp_path):
    """Prefect validates its settings with pydantic while it is imported; a Ctrl-C landing in
    pydantic's compiled core comes back as a PydanticSerializationError naming it."""
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
    before = gc.get_freeze_count()
    assert main(["runs", "--artifacts-dir", str(tmp_path)]) == 0
    assert gc.get_freeze_count() == before
