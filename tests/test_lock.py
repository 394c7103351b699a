"""One writer per run directory (issue 9, case 5): a second process on the same run id stops at
once with one line naming the holder; a holder killed with SIGKILL never blocks the next run
(a whole pipeline killed so: tests/test_interrupts.py)."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from flows.cli.command import main
from vae_model.runs import directory, lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLDER = """
import sys, time
from vae_model.runs import lock
with lock.hold(sys.argv[1], command="vae-pipeline run --run-id busy"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process writing run 'busy' (as a flow run would, holding its lock)."""
    path = directory.run_dir(tmp_path / "artifacts", "busy")
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    yield process, path
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_second_writer_is_refused_naming_the_holder_and_the_fix(holder):
    process, path = holder
    with pytest.raises(lock.RunLocked) as refused:
        with lock.hold(path):
            pass
    message = str(refused.value)
    assert f"pid {process.pid} on host {socket.gethostname()} since 20" in message
    assert "wait for it to finish, or pick another --run-id" in message
    assert lock.holder(path)["command"] == "vae-pipeline run --run-id busy"


def test_the_cli_stops_at_once_with_one_line(holder, tmp_path, capsys):
    process, _ = holder
    code = main(["run", "--run-id", "busy", "--artifacts-dir", str(tmp_path / "artifacts"),
                 "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"vae-pipeline: error: run busy is being written by pid {process.pid}")


def test_a_holder_killed_with_sigkill_never_blocks(holder):
    process, path = holder
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert lock.holder(path) is None
    with lock.hold(path) as info:
        assert info["pid"] == os.getpid()
        assert lock.holder(path) is not None  # seen as held from another open file
    assert (path / lock.LOCK_FILE).read_text() == ""  # no stale name after release
