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
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
# The newsletter's three languages and the Babel locale each one is written in.
BABEL_LOCALES = {"en": "en", "pt": "pt_PT", "zh": "zh_Hans_CN"}
# What a page says it is written in (`<html lang>`, BCP 47): the catalogs are European
# Portuguese and Simplified Chinese.
LANGUAGE_TAGS = {"en": "en", "pt": "pt-PT", "zh": "zh-Hans"}
# Each language named in itself, for the language switcher and the forms.
LANGUAGE_NAMES = {"pt": "Português", "en": "English", "zh": "中文"}
# An Accept-Language header longer than this is a client's mistake or an attack: only its
# beginning is read.
_MAX_ACCEPT_LANGUAGE = 500


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


def negotiate_language(accept_language: str | None, *, default: str) -> str:
    """The newsletter's language a browser asks for most (RFC 9110 Accept-Language), else default.

    Only the primary subtag counts (pt-BR and pt-PT both read Portuguese, zh-TW and zh-CN
    Chinese); entries are taken by their q-value, the header's order breaking ties, and
    q=0 means "not this one".
    """
    ranked: list[tuple[float, int, str]] = []
    for position, entry in enumerate((accept_language or "")[:_MAX_ACCEPT_LANGUAGE].split(",")):
        tag, _, params = entry.strip().partition(";")
        weight = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value)
            except ValueError:
                continue
        language = tag.strip().split("-")[0].lower()
        if weight > 0 and language in LANGUAGE_TAGS:
            ranked.append((-weight, position, language))
    return min(ranked)[2] if ranked else default


@pass_context
def _gettext_of_page(context: Context, message: str) -> str:
    return translations(context.get("language") or "en").gettext(message)


@pass_context
def _ngettext_of_page(context: Context, singular: str, plural: str, number: int) -> str:
    return translations(context.get("language") or "en").ngettext(singular, plural, number)


def install_page_translations(env: Environment) -> None:
    """`_()` in the pages, in the language of each page's context (`language`), newstyle.

    One environment serves every request, so the catalog is chosen per render, from the
    context, not installed once as the emails' environments do.
    """
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(  # type: ignore[attr-defined]
        _gettext_of_page, _ngettext_of_page, newstyle=True
    )
