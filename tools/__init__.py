"""Development tools beside the kit: a fake TorchServe worker (shared by the tests, the fuzz suite and
the bench), the import-graph check, and one-off investigations. Neither the archives nor the container
image hold this package."""
