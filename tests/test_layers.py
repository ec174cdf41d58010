"""The package's shape: stages import only lower stages, and notebooks call public functions.

The stages follow the course: data (01) < models (02) < evaluation (02, 05) < train (03-04)
< audit (06) < course (00, 07) < the command line. A lower stage never imports a higher one,
so a student reading `unlearnlib/evaluation` never meets training code, and every notebook
cell's library call opens, in one jump, at the module that defines it.
"""

import ast
import importlib
import json
from pathlib import Path

import pytest

from unlearnlib.paths import PACKAGE_DIR

#: Rank of each part of the package; a module may import its own rank or lower.
LAYERS = {
    "cache": 0, "checks": 0, "display": 0, "parallel": 0, "paths": 0, "plots": 0,
    "profiles": 0,
    "data": 1, "models": 2, "evaluation": 3, "train": 4, "audit": 5, "course": 6,
    "cli": 7, "memory": 7, "__main__": 7,
}
STAGES = ("data", "models", "evaluation", "train", "audit", "course")
NOTEBOOKS = sorted((PACKAGE_DIR.parent / "notebooks").glob("[0-9][0-9]_*.ipynb")) + [
    PACKAGE_DIR / "course" / "templates" / "sweep_point.ipynb"]


def _part(module: str) -> str:
    """The top-level part of `unlearnlib.<part>...`."""
    return module.split(".")[1]


def _modules() -> dict[str, Path]:
    files = sorted(p for p in PACKAGE_DIR.rglob("*.py") if "weights" not in p.parts)
    return {".".join(("unlearnlib", *p.relative_to(PACKAGE_DIR).with_suffix("").parts)): p
            for p in files if p.name != "__init__.py"}


def _unlearnlib_imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("unlearnlib."):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("unlearnlib.")]
    return found


def test_every_module_has_a_layer():
    assert {_part(name) for name in _modules()} <= set(LAYERS)
    for stage in STAGES:
        assert (PACKAGE_DIR / stage / "__init__.py").is_file()


@pytest.mark.parametrize("module", sorted(_modules()), ids=lambda m: m.removeprefix("unlearnlib."))
def test_modules_import_only_their_own_or_lower_layers(module):
    tree = ast.parse(_modules()[module].read_text())
    rank = LAYERS[_part(module)]
    upward = [imported for imported, _ in _unlearnlib_imports(tree)
              if LAYERS[_part(imported)] > rank]
    assert not upward, f"{module} (layer {rank}) imports higher layers: {upward}"


def _defined_names(module: str) -> set[str]:
    """Names a module defines itself (functions, classes, assignments), not ones it imports."""
    tree = ast.parse(_modules()[module].read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_resolve_to_public_names_of_one_module(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    imports = []
    for cell in cells:
        lines = "".join(cell["source"]).splitlines()
        code = "\n".join(line[:len(line) - len(line.lstrip())] + "pass"  # a shell or magic line
                         if line.lstrip().startswith(("%", "!")) else line for line in lines)
        imports += _unlearnlib_imports(ast.parse(code))
    assert imports, f"{path.name} calls no library code"
    for module, names in imports:
        if module not in _modules():  # `from unlearnlib.course import sweep`: a module
            assert importlib.util.find_spec(module) is not None, module
            for name in names:
                assert f"{module}.{name}" in _modules(), f"{path.name}: {module}.{name}"
            continue
        for name in names:
            assert not name.startswith("_"), f"{path.name} imports private {module}.{name}"
            assert name in _defined_names(module), (
                f"{path.name} imports {name} from {module}, which does not define it")
