"""nbval re-executes these golden notebooks as `unlearnlib course run` executed them.

Under `pytest --nbval-lax` the kernels get the runner's environment (offline, progress bars
off) and a fresh, empty UNLEARNLIB_HOME, so every model a notebook trains is trained from
scratch, as in CI and in `make goldens`, rather than read from a developer's cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from unlearnlib.course.runner import course_environment
from unlearnlib.paths import HOME_ENV

_home: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """Set the kernels' environment before nbval starts them (at each notebook's first cell)."""
    if not (getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False)):
        return
    _home.append(tempfile.mkdtemp(prefix="unlearnlib-nbval-"))
    os.environ.update(course_environment("tiny"))
    os.environ[HOME_ENV] = _home[0]


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _home:
        shutil.rmtree(folder, ignore_errors=True)
