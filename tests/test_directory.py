"""The run directory (vae_model.runs.directory): run ids cannot escape the artifacts root, and
an artifacts directory that cannot be written (not a directory, a full disk) is refused with
one line before any work."""

import errno
import os

import pytest

from flows.cli.command import main
from vae_model import UserInputError
from vae_model.runs import directory
from vae_model.runs.directory import run_dir


@pytest.mark.parametrize("run_id", ["../evil", "a/b", "", ".hidden", "x" * 101, "a..b"])
def test_run_ids_cannot_escape_the_artifacts_root(tmp_path, run_id):
    with pytest.raises(Exception, match="not allowed|outside"):
        run_dir(tmp_path, run_id)


def test_unwritable_artifacts_dir_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = main(["run", "--artifacts-dir", str(blocker / "artifacts"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write to" in err and err.count("\n") == 1


def test_full_disk_is_a_clear_error(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(UserInputError, match="No space left on device"):
        directory.ensure_writable(tmp_path / "artifacts")
