"""Every public name that jdl and its subpackages list in ``__all__`` exists and is documented."""

import importlib
import inspect

import pytest

import jdl

MODULES = [f"jdl.{name}" for name in jdl.__all__ if name not in ("__version__", "fit")]


def test_top_level_lists_every_subpackage():
    assert sorted(MODULES) == sorted(
        f"jdl.{n}"
        for n in (
            "augment",
            "data",
            "hyperparams",
            "losses",
            "models",
            "optim",
            "regularizers",
            "run",
            "search",
            "train",
            "types",
        )
    )
    assert isinstance(jdl.__version__, str)
    assert jdl.fit is jdl.run.fit  # the one function re-exported at the top


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_exists_and_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    assert module.__doc__, module_name
    names = module.__all__
    assert len(names) == len(set(names)), f"{module_name}.__all__ repeats a name"
    for name in names:
        obj = getattr(module, name)  # AttributeError names the missing export
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), f"{module_name}.{name} has no docstring"
