"""How the course prints numbers: fixed decimals, or scientific notation when they would vanish.

Forget quality spans 1e-50 to 1, so a fixed ``0.000`` would hide the difference between a
run the KS test rejects outright and one it barely rejects. `format_number` keeps the usual
three decimals and switches to scientific notation exactly when those decimals would print
a non-zero number as zero. Use it for a whole table with
``frame.to_string(float_format=format_number)`` or ``frame.style.format(format_number)``.
"""

from __future__ import annotations

import math


def format_number(value: float, decimals: int = 3, significant: int = 2) -> str:
    """``value`` with `decimals` decimals, or with `significant` digits in scientific notation
    when those decimals would round a non-zero number to zero (6.4e-10, never 0.000).

    NaN and infinities print as Python prints them.
    """
    number = float(value)
    fixed = f"{number:.{decimals}f}"
    if number != 0 and math.isfinite(number) and float(fixed) == 0:
        return f"{number:.{significant - 1}e}"
    return fixed
