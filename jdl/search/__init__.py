"""jdl.search."""
