"""What several test modules share, in one place: synthetic and tiny IDX data (:mod:`.data`),
made-up runs (:mod:`.fake_runs`), real pipeline processes (:mod:`.processes`) and real servers
(:mod:`.servers`). Test modules import from here, never from ``conftest`` or from each other;
``conftest`` holds the environment setup and the shared fixtures."""
