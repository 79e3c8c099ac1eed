"""Translations of the email and page chrome: Babel catalogs read from newsletter/locales/."""

from __future__ import annotations

import gettext
import io
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from babel import Locale
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.units import format_unit

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
# The newsletter's three languages and the Babel locale each one is written in.
BABEL_LOCALES = {"en": "en", "pt": "pt_PT", "zh": "zh_Hans_CN"}


@lru_cache(maxsize=8)
def translations(language: str) -> gettext.NullTranslations:
    """The catalog for a language, compiled in memory from its .po file (no build step)."""
    po_file = LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po_file.is_file():
        return gettext.NullTranslations()
    with po_file.open("rb") as handle:
        catalog = read_po(handle, locale=BABEL_LOCALES.get(language, language))
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def long_date(moment: datetime, language: str) -> str:
    """A date as a reader of that language writes it: 26 de novembro de 2026, 2026年11月26日.

    The date is the one on `moment`'s own clock: give it on the reader's (clock.in_zone).
    """
    return format_date(moment.date(), format="long", locale=babel_locale(language))


def babel_locale(language: str) -> Locale:
    return Locale.parse(BABEL_LOCALES.get(language, "en"))


def duration(seconds: int, language: str) -> str:
    """A length of time as a reader of that language says it: 7 days, 7 dias, 7天.

    In the largest unit that states it exactly (36 hours, not "2 days"): a reader is told
    how long a link lasts, not a rounding of it.
    """
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            return format_unit(seconds // size, f"duration-{unit}", locale=babel_locale(language))
    return format_unit(seconds, "duration-second", locale=babel_locale(language))
