"""CSV files uploaded to the admin pages (subscribers, suppressions): the form field, the
size limit, and the file's text."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, File, UploadFile

from newsletter.core.validation import InvalidInput

MAX_CSV_BYTES = 20 * 1024 * 1024
NO_FILE_CHOSEN = "Choose a CSV file."


@dataclass(frozen=True)
class CsvUpload:
    """An uploaded file's name and bytes: up to one byte past the limit, so that a file too
    large is known as such without reading all of it."""

    name: str
    raw: bytes


async def _read_csv_upload(
    file: Annotated[UploadFile | None, File()] = None,
) -> CsvUpload | None:
    if file is None or not file.filename:
        return None
    return CsvUpload(name=file.filename, raw=await file.read(MAX_CSV_BYTES + 1))


# The form's `file` field; None when no file was chosen.
CsvFile = Annotated[CsvUpload | None, Depends(_read_csv_upload)]


def csv_text(raw: bytes) -> io.StringIO:
    """The upload as text for the csv module, or InvalidInput when it is too large or not
    UTF-8 (a byte-order mark, as spreadsheets write, is dropped)."""
    if len(raw) > MAX_CSV_BYTES:
        raise InvalidInput(
            "file", f"The file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB; split it."
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            "file", f"The file is not UTF-8 text (invalid byte at offset {exc.start})."
        ) from None
    # newline="": quoted cells may hold line breaks.
    return io.StringIO(text, newline="")
