"""The layers import downwards only: a module imports its own layer and the layers below it.

common < components/data < components/validation < the other components < trainer < pipeline <
kubeflow, and a test imports only the layer it tests and those below (tests/ and bench/ sit on top),
and testsupport/, which no other code imports.

- common: what every layer needs to start and to speak (process start-up, redaction, safe YAML);
- components/data: storage, the launcher's store resolution, sources and their limits, and the
  data components;
- components/*: the TFX components, the Trainer's configuration among them (components/training);
  the Trainer component names its run_fn by a dotted string, never by an import;
- trainer/: the run_fn side (model, input pipeline, export), above the components whose
  configuration it reads;
- pipeline/, kubeflow/: the runners and user commands.

Imports are read from the source: `import`, `from ... import`, lazy ones inside functions, and
`importlib.import_module("...")` or `__import__("...")` with a literal name.
"""

import ast
import os

import pytest

from tests.helpers import REPO

LAYERS = (("common",), ("components.data",), ("components.validation",),
          ("components",),  # training (and the Trainer's config), evaluation, push, report, artifact types
          ("trainer",), ("pipeline",), ("kubeflow",), ("tests", "bench", "testsupport"))


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


def _dynamic_import(node: ast.AST):
    """The literal module name of `importlib.import_module("x")` or `__import__("x")`, else None."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    func = node.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or \
        (isinstance(func, ast.Name) and func.id in ("import_module", "__import__"))
    return node.args[0].value if named and isinstance(node.args[0].value, str) else None


def imports(source: str, path: str = "<source>"):
    """(line, dotted name) of every import of this project's packages in a source, lazy ones too."""
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif _dynamic_import(node):
            names = [_dynamic_import(node)]
        else:
            continue
        for name in names:
            if layer_of(name) is not None:
                yield node.lineno, name


def is_test(module: str) -> bool:
    return module.endswith("_test") or module == "conftest" or module.endswith(".conftest")


def upward(module: str, source: str):
    """The imports of a module's source that reach a layer above its own (a test may use testsupport)."""
    own = layer_of(module)
    return [f"line {line}: {name}" for line, name in imports(source) if layer_of(name) > own
            and not (is_test(module) and layer_of(name) == len(LAYERS) - 1 and name.startswith("testsupport"))]


def _python_files():
    for top in ("common", "components", "trainer", "pipeline", "kubeflow", "tests", "bench"):
        for folder, _, files in os.walk(os.path.join(REPO, top)):
            yield from (os.path.join(folder, f) for f in sorted(files) if f.endswith(".py"))


def test_layer_of():
    assert layer_of("common.redact") == 0
    assert layer_of("components.data.storage") == 1 and layer_of("components.validation.schema") == 2
    assert layer_of("components.training.train_config") == 3 and layer_of("components.report.review") == 3
    assert layer_of("trainer.task") == 4 and layer_of("pipeline.options") == 5 and layer_of("kubeflow.compile") == 6
    assert layer_of("numpy") is None and layer_of("componentsx") is None


@pytest.mark.parametrize("planted", [
    "from trainer.export import IMAGE_BYTES_SIGNATURE\n",
    "def f():\n    from pipeline import options  # lazy\n    return options\n",
    "from testsupport.fixtures import png_bytes\n",
    "import importlib\n\ndef f():\n    return importlib.import_module('kubeflow.compile')\n",
    "def f():\n    return __import__('trainer.task')\n",
])
def test_a_planted_upward_import_is_found(planted):
    """components/push/version_dirs.py with one upward import planted, in each form the rule reads."""
    with open(os.path.join(REPO, "components", "push", "version_dirs.py"), encoding="utf-8") as f:
        source = f.read()
    assert upward("components.push.version_dirs", source) == []
    assert len(upward("components.push.version_dirs", source + "\n\n" + planted)) == 1


@pytest.mark.parametrize("path", list(_python_files()), ids=lambda p: os.path.relpath(p, REPO))
def test_imports_go_downwards(path):
    with open(path, encoding="utf-8") as f:
        found = upward(_module_name(path), f.read())
    assert not found, f"{os.path.relpath(path, REPO)} (layer {LAYERS[layer_of(_module_name(path))]}) imports from above: {found}"
