"""What a run's numbers depend on besides its data and seeds: the code that computed them
(:func:`code_version`) and the processor it ran on (:func:`processor`). XLA
compiles for the host's instruction set and oneDNN dispatches on it, so float32 sums are rounded
in another order on another processor, and ten epochs of training turn that into other weights,
as another seed would (seen: the default run's paired -ELBO difference was -1.10 on AVX-512
machines and +0.95 on an AVX2 one, with the same code, data and seeds)."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path

# the extensions that decide which kernels XLA and oneDNN run (x86, then Arm)
VECTOR_EXTENSIONS = ("avx512f", "avx512_bf16", "amx_tile", "avx2", "fma", "asimd", "sve")


def processor(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict:
    """{"model", "cores" (usable by this process), and where the system says: "family"
    (x86 family/model), "instructions" (those of VECTOR_EXTENSIONS it has)}."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"model": platform.processor() or platform.machine() or "unknown", "cores": cores}
    try:
        lines = Path(cpuinfo).read_text(errors="replace").splitlines()
    except OSError:  # not Linux, or hidden: the model is all there is
        return info
    fields: dict[str, str] = {}
    for line in lines:  # the first processor's fields (the others repeat them)
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip(), value.strip())
    info["model"] = fields.get("model name") or fields.get("Hardware") or info["model"]
    if "cpu family" in fields:
        info["family"] = f"{fields['cpu family']}/{fields.get('model', '?')}"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    info["instructions"] = [name for name in VECTOR_EXTENSIONS if name in flags]
    return info


@functools.cache
def machine() -> dict:
    """This host's name and :func:`processor`: which machine trained or scored a model."""
    return {"host": socket.gethostname(), "processor": processor()}


def machines_by_model(models: dict) -> list[str]:
    """``"<model>: <host>: <processor>; ..."`` per model (from metrics.json's ``machines``) when
    more than one machine trained them, else []."""
    lines = {name: [f"{m.get('host', '?')}: {describe(m.get('processor'))}"
                    for m in model.get("machines") or []] for name, model in models.items()}
    if len({line for found in lines.values() for line in found}) <= 1:
        return []
    return [f"{name}: {'; '.join(found) or 'not recorded'}" for name, found in lines.items()]


def describe(info: dict | None) -> str:
    """One line, e.g. ``AMD EPYC (family/model 25/1), 2 cores, avx2 fma``; "–" if unknown."""
    if not info:
        return "–"
    text = info.get("model") or "unknown"
    if info.get("family"):
        text += f" (family/model {info['family']})"
    if info.get("cores"):
        text += f", {info['cores']} cores"
    if "instructions" in info:
        text += ", " + (" ".join(info["instructions"]) or "none of " + "/".join(VECTOR_EXTENSIONS))
    return text


def code_version(project: str | os.PathLike | None = None) -> str:
    """The git commit of the project's source (``+dirty`` when tracked code files differ from
    it), or the installed package's version where the source is not a git checkout."""
    project = Path(project or Path(__file__).resolve().parents[2])
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(project), *args], capture_output=True,
                                  text=True, timeout=20, check=True).stdout.strip()
        if Path(git("rev-parse", "--show-toplevel")).resolve() != project.resolve():
            raise subprocess.SubprocessError("not this project's repository")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "vae_model",
                    "tasks", "flows")
        return git("rev-parse", "--short=10", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            return "vae-pipeline " + importlib.metadata.version("vae-pipeline")
        except importlib.metadata.PackageNotFoundError:
            return "unknown"
