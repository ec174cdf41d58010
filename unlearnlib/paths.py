"""Where data, trained artifacts and outputs live, independent of the working directory.

nbval runs a notebook from its own folder and papermill from the caller's, so nothing in
the course may resolve a path relative to the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: The checkout this package was installed from, or None for a plain (non-editable) install.
REPO_ROOT: Path | None = (
    PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").is_file() else None
)

#: Environment variable naming a local folder in the Hub's TOFU layout (e.g. ../shared/tofu).
TOFU_DIR_ENV = "UNLEARNLIB_TOFU_DIR"
#: Environment variable overriding where trained models and caches go.
HOME_ENV = "UNLEARNLIB_HOME"


def home_dir() -> Path:
    """Root for trained artifacts and caches: $UNLEARNLIB_HOME, the checkout, or ~/.cache."""
    if os.environ.get(HOME_ENV):
        root = Path(os.environ[HOME_ENV]).expanduser()
    elif REPO_ROOT is not None:
        root = REPO_ROOT / "artifacts"
    else:
        root = Path.home() / ".cache" / "unlearnlib"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        where = f"${HOME_ENV}={os.environ[HOME_ENV]}" if os.environ.get(HOME_ENV) else str(root)
        raise NotADirectoryError(
            f"{where} is not a folder unlearnlib can create or write to ({error.strerror}): "
            f"set ${HOME_ENV} to a writable folder (or unset it).") from error
    return root.resolve()


def artifacts_dir(*parts: str) -> Path:
    """A folder under `home_dir()` for one kind of artifact, created on demand."""
    path = home_dir().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def shipped_tofu_mini_dir() -> Path | None:
    """The committed TOFU-mini folder of a checkout (None in a plain install)."""
    if REPO_ROOT is None:
        return None
    path = REPO_ROOT / "data" / "tofu_mini"
    return path if path.is_dir() else None
