"""The layers import downwards only: a module imports its own layer and the layers below it.

components/data < components/validation < trainer < the other components < pipeline < kubeflow,
and a test imports only the layer it tests and those below (tests/ and bench/ sit on top).
"""

import ast
import os

import pytest

from tests.helpers import REPO

LAYERS = (("components.data",), ("components.validation",), ("trainer",),
          ("components",),  # training, evaluation, push, report, and the package's artifact types
          ("pipeline",), ("kubeflow",), ("tests", "bench"))


def layer_of(module: str) -> int:
    """The layer of a dotted module name; the most specific prefix wins."""
    best, length = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = index, len(prefix)
    return best


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _imports(path: str):
    """(line, dotted name) of every import of this project's packages in a file, lazy ones too."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if layer_of(name) is not None:
                yield node.lineno, name


def _python_files():
    for top in ("components", "trainer", "pipeline", "kubeflow", "tests", "bench"):
        for folder, _, files in os.walk(os.path.join(REPO, top)):
            yield from (os.path.join(folder, f) for f in sorted(files) if f.endswith(".py"))


def test_layer_of():
    assert layer_of("components.data.storage") == 0 and layer_of("components.validation.schema") == 1
    assert layer_of("trainer.task") == 2 and layer_of("components.report.review") == 3
    assert layer_of("pipeline.configs") == 4 and layer_of("kubeflow.compile") == 5
    assert layer_of("numpy") is None and layer_of("componentsx") is None


@pytest.mark.parametrize("path", list(_python_files()), ids=lambda p: os.path.relpath(p, REPO))
def test_imports_go_downwards(path):
    own = layer_of(_module_name(path))
    upward = [f"line {line}: {name}" for line, name in _imports(path) if layer_of(name) > own]
    assert not upward, f"{os.path.relpath(path, REPO)} (layer {LAYERS[own]}) imports from above: {upward}"
