"""Prefect flows: the pipeline recipe (``pipeline``), single-stage reruns (``rerun``), and the
``vae-pipeline`` command line (``cli``)."""
