"""pyproject.toml and environment.yml must list the same packages; README and CI agree."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirements() -> list[str]:
    """The dependencies and every optional extra (make install installs them all)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    return project["dependencies"] + [r for extra in extras for r in extra]


def _pyproject_packages() -> set[str]:
    return {_name(r) for r in _requirements()}


def _environment_packages() -> set[str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    names = set()
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            names |= {_name(r) for r in entry["pip"] if not r.startswith("-e")}
        elif _name(entry) not in ("python", "pip"):
            names.add(CONDA_TO_PYPI.get(_name(entry), _name(entry)))
    return names


def test_environment_yml_matches_pyproject():
    assert _environment_packages() == _pyproject_packages()


def test_dependencies_have_lower_bounds_only():
    for requirement in _requirements():
        assert ">=" in requirement and "==" not in requirement and "<" not in requirement.replace(
            ">=", ""), requirement


def test_readme_commands_are_the_makefile_targets_ci_runs():
    readme = (REPO / "README.md").read_text()
    assert "make course" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^TORCH_SPEC \?= torch==", makefile, re.M)  # pinned, overridable


def test_every_imported_package_is_declared():
    """A package the library or the benchmarks import must be a declared dependency, not one
    that happens to come along with another."""
    declared = {name.lower().replace("_", "-") for name in _pyproject_packages()}
    distributions = importlib.metadata.packages_distributions()
    files = [*(REPO / "unlearnlib").rglob("*.py"), *(REPO / "benchmarks").glob("*.py")]
    undeclared = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("unlearnlib", "google"):  # Colab
                    continue
                dists = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
                if not dists & declared:
                    undeclared.add(f"{top} ({file.relative_to(REPO)})")
    assert not undeclared, sorted(undeclared)
