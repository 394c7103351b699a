"""What a run shows: figures, the report and its tables, the history across runs, TensorBoard."""
