"""Sizes as the config writes them, and as messages show them."""

from __future__ import annotations

import pytest

from agent.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("500MB", 500_000_000), ("1.5GiB", 1_610_612_736), ("64 KiB", 65_536), ("10b", 10), ("2tb", 2 * 10**12),
     (" 1KB ", 1000), ("0MB", 0)],
)
def test_decimal_and_binary_units_in_any_case(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [(500, "invalid size 500 (a unit is required, e.g. '500MB')"),
     ("5XB", "invalid size '5XB' (a number and one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, e.g. '500MB')"),
     ("-5MB", "invalid size '-5MB' (a number and one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, e.g. '500MB')"),
     (True, "invalid size True (a number and one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, e.g. '500MB')")],
)
def test_anything_else_is_refused_saying_what_is_expected(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(("size", "text"), [(512, "512 B"), (1500, "1.5 KB"), (612_300_000, "612.3 MB"),
                                            (2 * 10**9, "2 GB"), (41_943_040, "41.9 MB")])
def test_format_size_reads_for_people(size: int, text: str) -> None:
    assert format_size(size) == text
