"""The measured commands' jobs: checks before any download, the shared runner, and sweeps of many runs."""
