"""Run bookkeeping, without TensorFlow: the run directory, the registry of runs, the writer's
lock, atomic storage, machine facts and stop requests."""
