"""CSV cells a spreadsheet shows as text and never runs as a formula, and read back as written.

Every CSV the service writes (the subscribers and the suppressions exports, from the
dashboard and the command line) goes through `writer`; every CSV it reads back (the
subscribers and the suppressions imports) reads its cells with `read_cell`, so that an
exported file imports to the same addresses and names.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, Protocol

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's list); it
# trims leading spaces first, so they are looked for after any whitespace too.
_FORMULA_START = ("=", "+", "-", "@")
# Cells that start with these are read as something else than the text (a tab or a line
# break moves the formula out of sight); a leading quote is the neutralising mark itself,
# so a value that begins with one is marked too, and reads back unchanged.
_CONTROL_START = ("\t", "\r", "\n", "'")
MARK = "'"


class _Writes(Protocol):
    def write(self, text: str, /) -> Any: ...


def safe_cell(value: object) -> str:
    """The cell as text, behind a quote when a spreadsheet would run or hide it.

    `=1+2@example.com` becomes `'=1+2@example.com`: shown as typed, never evaluated.
    """
    text = "" if value is None else str(value)
    if _needs_mark(text):
        return MARK + text
    return text


def read_cell(text: str) -> str:
    """A cell as `safe_cell` was given it: its neutralising quote taken off, and only that.

    A quote followed by text that would not have been marked is the value's own (a name
    typed as 'Ana), and stays.
    """
    if text.startswith(MARK) and _needs_mark(text[1:]):
        return text[1:]
    return text


class SafeWriter:
    """csv.writer whose every cell went through safe_cell."""

    def __init__(self, stream: _Writes) -> None:
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([safe_cell(value) for value in row])


def writer(stream: _Writes) -> SafeWriter:
    """The one way the service writes CSV."""
    return SafeWriter(stream)


def _needs_mark(text: str) -> bool:
    return text.startswith(_CONTROL_START) or text.lstrip().startswith(_FORMULA_START)
