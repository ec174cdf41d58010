"""TOFU and TOFU-mini as `datasets.Dataset`s, from the Hub, a local folder or the shipped mini set.

TOFU (Maini et al. 2024) is 200 invented authors x 20 question-answer pairs. Its splits
nest: `forgetNN` is the last NN % of authors, `retainNN` the rest, `holdoutNN` authors
never in `full`, and the `_perturbed` files add a paraphrased answer, perturbed (wrong)
answers and a paraphrased question for the truth ratio. TOFU-mini has the same files and
columns at a size a CPU learns in a minute.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import datasets

from unlearnlib.paths import TOFU_DIR_ENV, shipped_tofu_mini_dir

HUB_DATASET = "locuslab/TOFU"

_QA = ("question", "answer")
_PERTURBED = ("question", "answer", "paraphrased_answer", "perturbed_answer",
              "paraphrased_question")
_SHORT_PERTURBED = ("question", "answer", "perturbed_answer")
_MULTIPLE_CHOICE = ("question", "option1", "option2", "option3", "option4", "answer")

#: Every TOFU config and the columns it must have.
CONFIG_COLUMNS: dict[str, tuple[str, ...]] = {
    "full": _QA,
    **{f"forget{n}": _QA for n in ("01", "05", "10")},
    **{f"retain{n}": _QA for n in ("90", "95", "99")},
    **{f"holdout{n}": _QA for n in ("01", "05", "10")},
    **{f"forget{n}_perturbed": _PERTURBED for n in ("01", "05", "10")},
    "retain_perturbed": _PERTURBED,
    "real_authors": _MULTIPLE_CHOICE,
    "real_authors_perturbed": _SHORT_PERTURBED,
    "world_facts": _MULTIPLE_CHOICE,
    "world_facts_perturbed": _SHORT_PERTURBED,
}
CONFIGS: tuple[str, ...] = tuple(CONFIG_COLUMNS)
#: Columns that hold a list of strings (the wrong answers); every other column is a string.
LIST_COLUMNS = frozenset({"perturbed_answer"})
#: TOFU-mini only: the base model's "pre-training" set (question, answer for every
#: real_authors_perturbed and world_facts_perturbed row).
MINI_EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {"general_knowledge": _QA}

#: Percentages of authors in each forget / holdout split, and the retain split each pairs with.
FORGET_PERCENT = {"forget01": 1, "forget05": 5, "forget10": 10}
RETAIN_OF_FORGET = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
HOLDOUT_OF_FORGET = {"forget01": "holdout01", "forget05": "holdout05", "forget10": "holdout10"}


class MissingColumnError(KeyError):
    """A TOFU file lacks a column its config needs; the message names file and column."""

    def __str__(self) -> str:
        return str(self.args[0])


class HubUnreachableError(ConnectionError):
    """The Hugging Face Hub could not be reached; the message names the offline sources."""


@dataclass(frozen=True)
class TofuSource:
    """Where TOFU comes from: `kind` is "hub", "local" or "mini"; `path` for local and mini."""

    kind: str
    path: Path | None = None
    #: TOFU has 20 consecutive rows per author; TOFU-mini records its own number.
    questions_per_author: int = 20

    def describe(self) -> str:
        """A short human label, e.g. for table titles."""
        return HUB_DATASET if self.kind == "hub" else f"{self.kind}: {self.path}"


def resolve_source(source: str | Path | TofuSource | None = None) -> TofuSource:
    """Turn "hub", "mini", a folder path, or None into a `TofuSource`.

    None means: the folder in $UNLEARNLIB_TOFU_DIR if set, else TOFU-mini.
    """
    if isinstance(source, TofuSource):
        return source
    origin = ""
    if source is None:
        source = os.environ.get(TOFU_DIR_ENV) or "mini"
        origin = f" (from ${TOFU_DIR_ENV})" if os.environ.get(TOFU_DIR_ENV) else ""
    if str(source) == "hub":
        return TofuSource("hub")
    if str(source) == "mini":
        return _mini_source()
    path = Path(source).expanduser().resolve()
    if not path.is_dir():
        problem = "is a file, not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(
            f"TOFU folder {path}{origin} {problem}. Pass source='hub', source='mini', or a "
            "folder holding the Hub's files (full.json, forget10.json, ...)."
        )
    return TofuSource("local", path, _questions_per_author(path))


def _mini_source() -> TofuSource:
    """TOFU-mini: the committed copy in a checkout, else generated once into the cache."""
    path = shipped_tofu_mini_dir()
    if path is None:
        from unlearnlib.data.tofu_mini import generate_tofu_mini
        from unlearnlib.paths import artifacts_dir

        path = artifacts_dir("tofu_mini")
        if not (path / "full.json").is_file():
            generate_tofu_mini(path)
    return TofuSource("mini", path, _questions_per_author(path))


def _questions_per_author(folder: Path) -> int:
    """Rows per author: 20 for TOFU, or what the folder's `tofu_layout.json` records."""
    layout = folder / "tofu_layout.json"
    if layout.is_file():
        return int(json.loads(layout.read_text())["questions_per_author"])
    return 20


def _columns(config: str) -> tuple[str, ...]:
    return CONFIG_COLUMNS.get(config) or MINI_EXTRA_COLUMNS[config]


def check_config(config: str) -> None:
    """Raise a ValueError that suggests the closest valid name for an unknown config."""
    if config in CONFIG_COLUMNS or config in MINI_EXTRA_COLUMNS:
        return
    close = difflib.get_close_matches(config, CONFIGS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"{config!r} is not a TOFU config.{hint} Valid names: {', '.join(CONFIGS)}.")


def check_forget_split(name: str) -> str:
    """Refuse a forget split TOFU does not have (before any model loads)."""
    if name not in FORGET_PERCENT:
        raise ValueError(f"forget_split must be one of {list(FORGET_PERCENT)}, not {name!r}")
    return name


def load_tofu(config: str, source: str | Path | TofuSource | None = None) -> datasets.Dataset:
    """Load one TOFU config (e.g. "forget10_perturbed") as a `datasets.Dataset`.

    A local file is checked row by row (`_read_json_lines`): every line a JSON object with
    the config's columns, strings (lists of strings for `LIST_COLUMNS`).
    """
    check_config(config)
    src = resolve_source(source)
    if src.kind == "hub":
        dataset = _load_from_hub(config)
        origin = f"{HUB_DATASET}:{config}"
    else:
        file = src.path / f"{config}.json"
        dataset = datasets.Dataset.from_list(_read_json_lines(file, config))
        origin = str(file)
    if len(dataset) == 0:
        raise ValueError(f"{origin} has no rows.")
    missing = [c for c in _columns(config) if c not in dataset.column_names]
    if missing:
        raise MissingColumnError(
            f"{origin} lacks column(s) {missing}; a TOFU {config!r} file needs "
            f"{list(_columns(config))}."
        )
    return dataset


_JSON_LINES = "TOFU files are JSON lines: one object per line, not a JSON array."


def _read_json_lines(file: Path, config: str) -> list[dict]:
    """Rows of a JSON-lines file (the Hub's TOFU format), checked row by row.

    Errors name the file, the line and the column: bytes that are not UTF-8, a line that is
    not a JSON object, a missing column, or a value that is not a string (a list of strings
    in `LIST_COLUMNS`).
    """
    if not file.is_file():
        raise FileNotFoundError(f"TOFU file {file} is missing (expected the Hub's file name).")
    columns = _columns(config)
    rows = []
    with file.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{file}, line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{where}: not UTF-8 text (byte {raw[error.start]:#x} at "
                                 f"character {error.start + 1}); save the file as UTF-8."
                                 ) from error
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                hint = f" {_JSON_LINES}" if line.lstrip().startswith("[") else ""
                raise ValueError(f"{where}: not valid JSON ({error}).{hint}") from error
            if not isinstance(row, dict):
                raise ValueError(f"{where}: a TOFU row is a JSON object with {list(columns)}, "
                                 f"not a {type(row).__name__}. {_JSON_LINES}")
            missing = [c for c in columns if c not in row]
            if missing:
                raise MissingColumnError(f"{file} lacks column(s) {missing} at line {number}; "
                                         f"a TOFU {config!r} file needs {list(columns)}.")
            for column in columns:
                _check_value(row[column], column in LIST_COLUMNS, f"{where}, column {column!r}")
            rows.append(row)
    return rows


def _check_value(value: object, is_list: bool, where: str) -> None:
    ok = (isinstance(value, list) and all(isinstance(v, str) for v in value) if is_list
          else isinstance(value, str))
    if not ok:
        kind = "a list of strings" if is_list else "a string"
        raise ValueError(f"{where}: expected {kind}, got {json.dumps(value)[:60]}.")


def _load_from_hub(config: str) -> datasets.Dataset:
    """Download one config from the Hub, turning network failures into an actionable error."""
    try:
        return datasets.load_dataset(HUB_DATASET, config, split="train")
    except (ConnectionError, OSError, TimeoutError) as error:
        raise HubUnreachableError(
            f"Could not reach the Hugging Face Hub for {HUB_DATASET} ({type(error).__name__}: "
            f"{error}). Offline alternatives: a local copy of TOFU in the Hub's layout "
            f"(source='/path/to/tofu' or ${TOFU_DIR_ENV}=/path/to/tofu), or TOFU-mini "
            "(source='mini', the `tiny` profile)."
        ) from error


def author_ids(config: str, source: str | Path | TofuSource | None = None) -> list[int]:
    """The author of each row of a config, numbered as in `full` (holdout authors after them).

    TOFU stores `questions_per_author` consecutive rows per author, forget splits take the
    last authors and retain_perturbed the first ones, so the index follows from the row.
    """
    check_config(config)
    src = resolve_source(source)
    per_author = src.questions_per_author
    rows = len(load_tofu(config, src))
    if config in ("full", "retain_perturbed") or config.startswith("retain"):
        first = 0
    elif config.startswith("forget"):
        first = len(load_tofu("full", src)) - rows
    elif config.startswith("holdout"):
        first = len(load_tofu("full", src))  # holdout splits nest from their first author
    else:
        raise ValueError(f"{config!r} has no TOFU authors (it is a general-knowledge set).")
    return [(first + i) // per_author for i in range(rows)]


def data_info(source: str | Path | TofuSource | None = None) -> list[dict[str, object]]:
    """One record per config: name, row count and columns (for `unlearnlib data info`)."""
    src = resolve_source(source)
    extras = [c for c in MINI_EXTRA_COLUMNS if src.path and (src.path / f"{c}.json").is_file()]
    table = []
    for config in (*CONFIGS, *extras):
        dataset = load_tofu(config, src)
        table.append({"config": config, "rows": len(dataset),
                      "columns": ", ".join(dataset.column_names)})
    return table
