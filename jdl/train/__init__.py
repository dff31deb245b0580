"""jdl.train."""
