"""jdl: a JAX functional training framework for deep-learning research and teaching."""

__version__ = "0.1.0"

__all__ = ["__version__"]
