"""Range checks shared by the library, the CLI and the notebook runners.

Each raises a ValueError whose message says what was wrong and what to pass instead, so a
command-line user, a notebook cell and a sweep point all see the same sentence. Nothing
here imports torch: the runners check their parameters before a kernel or model starts.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_learning_rate(value: Any, name: str = "learning rate") -> float:
    """A finite learning rate > 0 (inf, nan or a huge step would write a NaN model)."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 (e.g. 5e-4), not {value!r}.")
    return float(value)


def check_at_least_one(value: Any, name: str, why: str = "") -> Any:
    """A count that must be >= 1 (epochs, steps, rows); `why` says what 0 would do."""
    if not _is_number(value) or not value >= 1:
        raise ValueError(f"{name} must be a number >= 1, not {value!r}{why}.")
    return value


def check_positive(value: Any, name: str, why: str = "") -> float:
    """A finite number > 0 (e.g. NPO's beta, which the loss divides by)."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, not {value!r}{why}.")
    return float(value)


def check_choice(value: Any, name: str, choices: Collection[str]) -> str:
    """One of `choices`; the message lists them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


#: The attention masks a batch can get (`data.formatting.MaskMode`): "lengths" masks padding
#: by the true sequence lengths, "open-unlearning" masks every pad-id token as it does.
MASK_MODES: tuple[str, ...] = ("lengths", "open-unlearning")


def check_mask_mode(value: Any) -> str:
    """One of `MASK_MODES`, checked before a model pass so a typo fails at once."""
    if value not in MASK_MODES:
        raise ValueError(f"mask_mode must be {' or '.join(map(repr, MASK_MODES))}, not {value!r}")
    return value
