"""A sweep is the pipeline over a larger grid, run on a Dask cluster: by default a local
``distributed`` cluster of two single-threaded worker processes; any scheduler with
``--dask-address``. Same parameters, same recipe, same report."""

from __future__ import annotations

from prefect_dask import DaskTaskRunner

from flows.pipeline import vae_pipeline

LOCAL_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "processes": True}


def dask_runner(address: str | None = None, n_workers: int = 2) -> DaskTaskRunner:
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={**LOCAL_CLUSTER, "n_workers": n_workers})


vae_sweep = vae_pipeline.with_options(name="vae-sweep", task_runner=dask_runner())
