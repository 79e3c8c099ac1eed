"""Admin pages that list many rows (articles, subscribers, suppressions, the outbox) a page
at a time: the page number asked for, and the slice of rows it shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Query

# Far beyond any real list, so that a huge number is refused (422) instead of computed with.
PageNumber = Annotated[int, Query(ge=1, le=1_000_000)]


@dataclass(frozen=True)
class Paging:
    """Which page of a list is shown, out of how many, and the rows it holds."""

    page: int
    pages: int
    limit: int
    offset: int


def paging(*, total: int, page: int, size: int) -> Paging:
    """The page asked for, kept within the pages there are: an empty list has one (empty)
    page, and a number past the end shows the last page."""
    pages = max(1, -(-total // size))
    page = min(page, pages)
    return Paging(page=page, pages=pages, limit=size, offset=(page - 1) * size)
