"""Atomic storage (vae_model.runs.storage): a full disk leaves no partial file, an existing
file is replaced whole or not at all, and written files get the mode the umask gives."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vae_model.runs import storage

ROOT = Path(__file__).resolve().parents[1]


def test_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        storage.write_text(tmp_path / "metrics.json", "{}")
    assert not (tmp_path / "metrics.json").exists()
    assert not list(tmp_path.glob(".metrics.json.*"))


def test_an_existing_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    target = storage.write_json(tmp_path / "metrics.json", {"old": True})

    def crash(src, dst):
        raise KeyboardInterrupt  # as if killed between writing and renaming
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        storage.write_json(target, {"new": True})
    assert storage.read_json(target) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    """Not mkstemp's private 0600: a colleague or a web server must be able to read a report."""
    target = tmp_path / "sub" / "report.html"
    code = ("import sys; from vae_model.runs import storage; "
            "storage.write_text(sys.argv[1], 'x')")
    subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT, check=True,
                   preexec_fn=lambda: os.umask(umask))
    assert target.stat().st_mode & 0o777 == mode
    assert target.parent.stat().st_mode & 0o777 == 0o777 & ~umask
