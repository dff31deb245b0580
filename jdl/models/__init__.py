"""jdl.models."""
