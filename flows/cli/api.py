"""The Prefect API a command reports to: checked before a flow starts (an unreachable server is
one line naming the URL and both fixes, instead of ~100 lines of client tracebacks), and
watched while a flow runs against a server of the user's, ending the command in one line if
that server stops answering for good."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

from vae_model import UserInputError


def api_url() -> tuple[str | None, str]:
    """The API URL Prefect will use, and where it was set (for the fix to name)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"], "environment"
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return (str(url) if url else None), "profile"


def check_api(timeout: float = 3.0) -> None:
    """Raise a one-line :class:`UserInputError` if ``PREFECT_API_URL`` is set and nothing
    answers there. Any HTTP answer counts as reachable (auth errors are Prefect's to report);
    unset, Prefect starts a temporary local server, which needs nothing."""
    url, source = api_url()
    if not url:
        return
    reason = _unreachable(url, timeout)
    if reason is not None:
        unset = ("unset PREFECT_API_URL" if source == "environment"
                 else "run `prefect config unset PREFECT_API_URL`")
        raise UserInputError(
            f"cannot reach the Prefect API at {url} ({reason}): start that server "
            f"(prefect server start), or {unset} to use a temporary local one")


def _loopback(host: str | None) -> bool:
    import ipaddress

    if not host or host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    return False


def check_reachable_by_workers(dask_address: str | None, api: str | None) -> None:
    """Refuse a Dask scheduler on another machine while the Prefect API is a temporary server
    or on loopback: its workers could not report their task runs to it."""
    from urllib.parse import urlsplit

    if not dask_address or _loopback(urlsplit(dask_address).hostname):
        return
    if api is None or _loopback(urlsplit(api).hostname):
        where = f"on loopback ({api})" if api else "a temporary one on this machine"
        raise UserInputError(
            f"the Dask cluster at {dask_address} cannot report to a Prefect API {where}: run "
            "`prefect server start --host 0.0.0.0` on a machine the workers reach and set "
            "PREFECT_API_URL to its address (and the workers' too)")


def _unreachable(url: str, timeout: float) -> str | None:
    """None if the API at ``url`` answers at all (any HTTP status: auth errors are Prefect's
    to report), else the name of the error that reaching it raised."""
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/health", timeout=timeout)
    except httpx.HTTPError as err:
        return type(err).__name__
    return None


# How long the user's Prefect API may be silent before the run is given up: a restarted server
# is back well within it, and Prefect's client retries a request for ~60 s (2 + 4 + ... + 32).
API_GRACE_SECONDS = 60.0
GRACE_VARIABLE = "VAE_PIPELINE_API_GRACE_SECONDS"


def api_grace_seconds() -> float:
    """API_GRACE_SECONDS, or the environment's VAE_PIPELINE_API_GRACE_SECONDS (checked)."""
    value = os.environ.get(GRACE_VARIABLE, "").strip()
    try:
        grace = float(value) if value else API_GRACE_SECONDS
    except ValueError:
        grace = float("nan")
    if not grace > 0 or grace == float("inf"):
        raise UserInputError(f"{GRACE_VARIABLE} must be a number of seconds > 0, got {value!r}: "
                             f"set it so, or unset it for {API_GRACE_SECONDS:.0f}")
    return grace


def watch_api(url: str, grace: float, every: float = 2.0) -> None:
    """End this command if the Prefect API at ``url`` stops answering for ``grace`` s while it
    runs, instead of training on and then retrying every state report for minutes: the runs
    being written are marked failed with the reason, their stages told to stop, one line
    printed, and the process ends (rc 1; rc 0 with a warning if the flow had finished)."""
    threading.Thread(target=_watch, args=(url, grace, every), name="api-watch",
                     daemon=True).start()


def _watch(url: str, grace: float, every: float) -> None:
    silent_since = None
    while True:
        time.sleep(every)
        if _unreachable(url, timeout=5.0) is None:
            silent_since = None
            continue
        silent_since = silent_since or time.monotonic()
        if time.monotonic() - silent_since >= grace:
            _give_up(f"the Prefect API at {url} stopped answering for {grace:.0f} s")


def _give_up(reason: str) -> None:
    from tasks import guard

    abandoned, finished = guard.abandon(reason)
    failed = bool(abandoned) or not finished
    sys.stderr.write("\n")  # Prefect's "Error logging to API" ends without one
    if failed:
        where = (f"; what was finished is kept in {abandoned[0]}: once the server is back, rerun "
                 f"with --run-id {abandoned[0].name} to resume" if abandoned else "")
        print(f"vae-pipeline: error: {reason}{where}", file=sys.stderr, flush=True)
    else:
        print(f"vae-pipeline: warning: {reason} after the run finished: its results are in "
              f"{finished[-1]}, but the Prefect UI will not show the flow run's end",
              file=sys.stderr, flush=True)
    import psutil  # Dask's local workers, if any, would outlive an exit without clean-up

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()
    sys.stdout.flush()
    os._exit(1 if failed else 0)
