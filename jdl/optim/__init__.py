"""jdl.optim."""
