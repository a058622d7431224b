"""Development tools beside the kit: a fake TorchServe worker (shared by the tests and the bench)
and one-off investigations. Neither the archives nor the container image hold this package."""
