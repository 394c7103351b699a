"""What several test modules share, in one place: synthetic and tiny IDX data (:mod:`.data`),
made-up runs (:mod:`.fake_runs`), real pipeline processes (:mod:`.processes`), real servers
(:mod:`.servers`), and a cluster of machines that share no disk: an S3 server and Dask workers
in namespaces of their own (:mod:`.cluster`). Test modules import from here, never from ``conftest`` or from each other;
``conftest`` holds the environment setup and the shared fixtures."""
