"""Translations of the email and page chrome: Babel catalogs read from newsletter/locales/."""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TypeAlias

from babel import Locale
from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.units import format_unit
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

from newsletter.core import clock

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


def local_date_time(moment: datetime, time_zone: str, language: str) -> str:
    """An instant as a reader of that language reads it on a zone's clock, the zone named:
    26 de novembro de 2026, 07:00 · Asia/Macau (UTC+8)."""
    local = clock.in_zone(moment, time_zone)
    written = format_time(local, format="short", locale=babel_locale(language))
    # Chinese writes no comma between a date and its time.
    between = " " if language == "zh" else ", "
    return f"{long_date(local, language)}{between}{written} · {clock.zone_label(time_zone, moment)}"


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


# A value put into a phrase: text, another phrase, or text that depends on the language
# (a duration, a date), given as a function of it.
PhraseValue: TypeAlias = "str | int | Phrase | Callable[[str], str]"


class Phrase(str):
    """A text to be written in a language chosen later: a page's, once the page knows it.

    Made with N_(), which Babel extracts. As a str it is the English text, formatted (what
    JSON answers and logs carry); `in_language` gives it in another.
    """

    message: str
    values: dict[str, PhraseValue]

    def __new__(cls, message: str, values: dict[str, PhraseValue]) -> Phrase:
        phrase = super().__new__(cls, _format(message, values, "en"))
        phrase.message = message
        phrase.values = values
        return phrase

    def in_language(self, language: str) -> str:
        return _format(translations(language).gettext(self.message), self.values, language)


def N_(message: str, **values: PhraseValue) -> Phrase:
    """Mark a text for translation now and write it later, in the language of its page."""
    return Phrase(message, values)


def catalog_phrase(text: str) -> Phrase | None:
    """A rule's refusal the catalogs translate (marked `translatable` where it is written),
    as a Phrase for its page; None for any other text (one naming what the visitor typed)."""
    if all(translations(language).gettext(text) == text for language in ("pt", "zh")):
        return None
    return Phrase(text, {})


def in_language(text: str, language: str) -> str:
    """A text in `language` if it is a Phrase; any other text as it is."""
    return text.in_language(language) if isinstance(text, Phrase) else text


def _format(message: str, values: dict[str, PhraseValue], language: str) -> str:
    if not values:
        return message
    return message % {name: _value(value, language) for name, value in values.items()}


def _value(value: PhraseValue, language: str) -> str | int:
    if isinstance(value, Phrase):
        return value.in_language(language)
    if callable(value):
        return value(language)
    return value


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
