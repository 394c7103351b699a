"""``vae-pipeline``, the command line, and its plumbing: console errors, the temporary Prefect
server, signals."""

from flows.cli.command import main

__all__ = ["main"]
