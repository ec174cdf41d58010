"""Numbers as the course prints them: never 0.000 for a number that is not zero."""

import math

import pandas as pd
import pytest

from unlearnlib.display import format_number


@pytest.mark.parametrize(("value", "text"), [
    (0.548, "0.548"),
    (0.9674, "0.967"),
    (108.5, "108.500"),
    (0.0, "0.000"),
    (0.0005, "0.001"),  # rounds up: three decimals still show it
    (0.00049, "4.9e-04"),
    (6.4e-10, "6.4e-10"),
    (3.905e-22, "3.9e-22"),
    (-2e-5, "-2.0e-05"),
])
def test_fixed_decimals_until_they_would_print_zero(value, text) -> None:
    assert format_number(value) == text


def test_digits_are_adjustable_and_nan_passes_through() -> None:
    assert format_number(0.0123, decimals=1, significant=3) == "1.23e-02"
    assert format_number(math.nan) == "nan"


def test_a_table_prints_its_tiny_p_values() -> None:
    frame = pd.DataFrame({"forget_quality": [6.4e-10, 0.967]}, index=["full", "npo"])
    printed = frame.to_string(float_format=format_number)
    assert "6.4e-10" in printed and "0.967" in printed and "0.000" not in printed
