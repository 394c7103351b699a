"""A cluster of machines that share no disk, on one machine: a real S3 server (SeaweedFS's
``weed mini``), and a Dask scheduler whose workers each run in their own mount namespace with
an empty tmpfs over every directory they must not share with the host or with each other."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers.servers import BIN, ROOT, _stop_group, free_port

REGION = "us-east-1"
# weed mini's plugin worker dials the admin server's gRPC at the admin port + 10000, whatever
# -admin.port.grpc says, so the admin port is chosen with that one free too.
ADMIN_GRPC_OFFSET = 10000
WEED_PORTS = ("s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port",
              "volume.port.grpc", "filer.port", "filer.port.grpc")
QUICK = {"connect_timeout": 2, "read_timeout": 5, "retries": {"max_attempts": 1}}


class CannotIsolate(RuntimeError):
    """This user may not give a process its own mount namespace (see :func:`can_isolate`)."""


def _tail(log: Path, size: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return log.read_bytes()[-size:].decode(errors="replace")
    return ""


def _wait(ready, process: subprocess.Popen, log: Path, what: str, timeout: float) -> None:
    """Polls ``ready()`` (false or raising means not yet) until it is true; raises with the
    log's tail if ``process`` exits first or the deadline passes."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        try:
            if ready():
                return
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"
            last = error
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited during start-up ({process.returncode}):\n"
                               + _tail(log))
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready in {timeout} s (last: {last!r}):\n"
                               + _tail(log))
        time.sleep(0.3)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports, and last an admin port whose + 10000 is free too."""
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    while True:  # below the usual ephemeral range, so that + 10000 stays a valid port
        admin = random.randint(20000, 29999)
        if {admin, admin + ADMIN_GRPC_OFFSET}.isdisjoint(ports) and _bindable(admin) \
                and _bindable(admin + ADMIN_GRPC_OFFSET):
            return [*ports, admin]


@dataclasses.dataclass
class ObjectStore:
    """A ``weed mini`` S3 server: its endpoint, and the standard AWS variables reaching it."""
    endpoint: str
    env: dict
    command: list
    home: Path
    process: subprocess.Popen | None = None

    def fs(self, **options):
        """An ``s3fs.S3FileSystem`` with this store's credentials (``options`` added)."""
        import s3fs

        return s3fs.S3FileSystem(key=self.env["AWS_ACCESS_KEY_ID"],
                                 secret=self.env["AWS_SECRET_ACCESS_KEY"],
                                 endpoint_url=self.endpoint, skip_instance_cache=True,
                                 client_kwargs={"region_name": REGION}, **options)

    def make_bucket(self, name: str) -> None:
        self.fs().mkdir(name)

    def start(self) -> None:
        """Starts the server (again: same ports and data) and waits until S3 answers."""
        with open(self.home / "weed.log", "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=self.home, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        _wait(lambda: self.fs(config_kwargs=QUICK).ls("") is not None, self.process,
              self.home / "weed.log", "weed mini", 60)

    def stop(self) -> None:
        """Stops the server's whole process group: the store is down until :meth:`start`."""
        if self.process is not None:
            _stop_group(self.process)
            self.process = None


@contextlib.contextmanager
def object_store(home: Path):
    """Yields a running :class:`ObjectStore` on 127.0.0.1 (every port it opens chosen free),
    its data in ``home`` and one identity with a random key and secret."""
    home.mkdir(parents=True, exist_ok=True)
    key, secret = f"VAE{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
    (home / "s3.json").write_text(json.dumps({"identities": [{
        "name": "vae", "credentials": [{"accessKey": key, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    *ports, admin = _ports(len(WEED_PORTS))
    weed = BIN / "weed" if (BIN / "weed").exists() else shutil.which("weed")
    command = [str(weed), "mini", f"-dir={home / 'data'}", "-ip=127.0.0.1",
               "-ip.bind=127.0.0.1", f"-s3.config={home / 's3.json'}", "-s3.port.iceberg=0",
               "-s3.port.lance=0", "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
               f"-admin.port={admin}", f"-admin.port.grpc={admin + ADMIN_GRPC_OFFSET}",
               f"-admin.dataDir={home / 'admin'}", f"-filer.localSocket={home / 'filer.sock'}",
               f"-s3.localSocket={home / 's3.sock'}",
               *(f"-{name}={port}" for name, port in zip(WEED_PORTS, ports))]
    endpoint = f"http://127.0.0.1:{ports[0]}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key,
           "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": REGION}
    (home / "data").mkdir(exist_ok=True)
    store = ObjectStore(endpoint, env, command, home)
    try:
        store.start()
        yield store
    finally:
        store.stop()


def can_isolate() -> tuple[bool, str]:
    """Whether this user may mount a tmpfs in a private mount namespace (root may), and if
    not, why not."""
    if shutil.which("unshare") is None:
        return False, "no unshare command"
    with tempfile.TemporaryDirectory() as directory:
        result = subprocess.run(["unshare", "--mount", "--uts", "--propagation", "private",
                                 "--", "sh", "-c", f"hostname probe && mount -t tmpfs tmpfs "
                                 f"{shlex.quote(directory)}"],
                                check=False, capture_output=True, text=True, timeout=30)
    if result.returncode:
        return False, f"cannot mount in a private mount namespace: {result.stderr.strip()}"
    return True, ""


class DaskCluster:
    """A Dask scheduler and named workers, each worker in its own mount namespace and with its
    own host name (its name)."""

    def __init__(self, env: dict, hidden: list[Path], names: list[str], logs: Path):
        self.env, self.workers, self.logs = env, names, logs
        self.hidden = []
        for directory in sorted(map(Path, hidden), key=lambda p: len(p.parts)):
            with contextlib.suppress(OSError):  # one that cannot exist has nothing to hide
                directory.mkdir(parents=True, exist_ok=True)
                self.hidden.append(directory)
        # every worker mounts its own tmpfs here: its HOME, caches, temporary files, spill
        self.private = logs / "private"
        self.private.mkdir(exist_ok=True)
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.clients: list = []
        self.watch = None  # the harness's own client, for :meth:`names`

    def _launch(self, name: str, command: list[str], env: dict, cwd: Path):
        with open(self.logs / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(command, env=env, cwd=cwd, stdout=log,
                                                    stderr=subprocess.STDOUT,
                                                    start_new_session=True)
        return self.processes[name]

    def _base_env(self) -> dict:
        # the host's own Prefect and AWS settings must not reach the cluster: only ``env``'s
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("PREFECT_", "AWS_"))}
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        return {**inherited, "TF_USE_LEGACY_KERAS": "1", "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": path}

    def start_scheduler(self) -> None:
        port = self.address.rsplit(":", 1)[1]
        process = self._launch("scheduler", [str(BIN / "dask"), "scheduler", "--host",
                                             "127.0.0.1", "--port", port, "--no-dashboard"],
                               self._base_env(), self.logs)
        _wait(lambda: not _bindable(int(port)), process, self.logs / "scheduler.log",
              "dask scheduler", 60)
        self.clients.append(self.client())
        self.watch = self.clients[-1]

    def names(self) -> set[str]:
        """The names of the workers the scheduler knows now."""
        info = self.watch.scheduler_info(n_workers=-1)
        return {str(worker["name"]) for worker in info["workers"].values()}

    def start(self, name: str) -> None:
        """Starts worker ``name`` (again) in a new mount namespace; waits until it joins."""
        deadline = time.monotonic() + 30
        while name in self.names() and time.monotonic() < deadline:  # a killed one's leaving
            time.sleep(0.2)
        home = self.private / "home"
        q = shlex.quote
        # a host name of its own (a UTS namespace), as a separate machine would have
        script = f"hostname {q(name)} && " + "".join(
            f"mkdir -p {q(str(d))} && mount -t tmpfs tmpfs {q(str(d))} && "
            for d in [*self.hidden, self.private])
        script += (f"mkdir -p {q(str(home / '.cache'))} {q(str(self.private / 'tmp'))} && "
                   f"exec {q(str(BIN / 'dask'))} worker {self.address} --name {q(name)} "
                   "--host 127.0.0.1 --nthreads 1 --nworkers 1 --no-nanny --no-dashboard "
                   f"--local-directory {q(str(self.private / 'dask'))}")
        env = {**self._base_env(), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
               "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local"),
               "TMPDIR": str(self.private / "tmp"), **self.env}
        process = self._launch(name, ["unshare", "--mount", "--uts", "--propagation",
                                      "private", "--", "sh", "-c", script], env, ROOT)
        _wait(lambda: name in self.names(), process, self.logs / f"{name}.log",
              f"dask worker {name}", 90)

    def kill(self, name: str) -> None:
        """SIGKILLs worker ``name``'s process group (no goodbye to the scheduler) and reaps it."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def client(self):
        """A ``distributed.Client`` to the scheduler, closed when the cluster stops."""
        from distributed import Client

        self.clients.append(Client(self.address, timeout=30))
        return self.clients[-1]

    def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close(timeout=10)
        for name in [*self.workers, "scheduler"]:  # workers first: they leave quietly
            if name in self.processes:
                _stop_group(self.processes.pop(name))


@contextlib.contextmanager
def dask_cluster(env: dict, hidden: list[Path], n_workers: int = 2, logs: Path | None = None):
    """Yields a running :class:`DaskCluster` of ``n_workers`` workers (worker-a, worker-b, ...)
    that see an empty tmpfs at each ``hidden`` directory and get ``env``; each process's
    output goes to ``logs`` (a temporary directory if none). Raises :class:`CannotIsolate`
    where this user may not make mount namespaces."""
    ok, reason = can_isolate()
    if not ok:
        raise CannotIsolate(reason)
    own_logs = logs is None
    logs = Path(tempfile.mkdtemp(prefix="vae-tests-dask-")) if logs is None else logs
    logs.mkdir(parents=True, exist_ok=True)
    cluster = DaskCluster(env, hidden, [f"worker-{chr(97 + i)}" for i in range(n_workers)],
                          logs)
    try:
        cluster.start_scheduler()
        for name in cluster.workers:
            cluster.start(name)
        yield cluster
    finally:
        cluster.close()
        if own_logs:
            shutil.rmtree(logs, ignore_errors=True)
