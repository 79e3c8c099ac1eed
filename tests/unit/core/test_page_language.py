"""Which of the newsletter's languages a page speaks, and how its times name their zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from jinja2 import Environment

from newsletter.core.clock import local_text, zone_label
from newsletter.core.i18n import install_page_translations, negotiate_language


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("pt-PT,pt;q=0.9,en;q=0.8", "pt"),
        ("pt-BR", "pt"),
        ("zh-CN,zh;q=0.9", "zh"),
        ("zh-TW", "zh"),
        ("de-DE,de;q=0.9,zh;q=0.5,pt;q=0.4", "zh"),
        ("en;q=0.2, pt;q=0.8", "pt"),
        ("fr, en-GB;q=0.5", "en"),
        ("pt;q=0, en;q=0.1", "en"),
        ("", "pt"),
        ("fr-FR,de", "pt"),
        ("*", "pt"),
        ("pt;q=abc, zh", "zh"),
    ],
)
def test_the_browsers_first_choice_among_ours(header: str, expected: str) -> None:
    assert negotiate_language(header, default="pt") == expected


def test_a_missing_or_endless_header_gives_the_default() -> None:
    assert negotiate_language(None, default="en") == "en"
    assert negotiate_language("x-klingon," * 10_000 + "zh", default="en") == "en"


def test_pages_translate_in_the_language_of_their_context() -> None:
    env = Environment(autoescape=True)
    install_page_translations(env)
    template = env.from_string('{{ _("Unsubscribe") }}|{{ _("Hello %(name)s,", name=who) }}')
    english = template.render(language="en", who="<b>Ana</b>")
    assert english.startswith("Unsubscribe|")
    # The reader's name is escaped although the message is marked safe.
    assert "&lt;b&gt;Ana&lt;/b&gt;" in english
    assert template.render(language="pt", who="Ana").split("|")[0] != "Unsubscribe"


@pytest.mark.parametrize(
    ("zone", "at", "label"),
    [
        ("Asia/Macau", datetime(2026, 12, 4, 12, tzinfo=UTC), "Asia/Macau (UTC+8)"),
        ("Europe/Lisbon", datetime(2026, 12, 4, 12, tzinfo=UTC), "Europe/Lisbon (UTC+0)"),
        ("Europe/Lisbon", datetime(2026, 7, 4, 12, tzinfo=UTC), "Europe/Lisbon (UTC+1)"),
        ("America/Sao_Paulo", datetime(2026, 7, 4, 12, tzinfo=UTC), "America/Sao_Paulo (UTC-3)"),
        ("Asia/Kolkata", datetime(2026, 7, 4, 12, tzinfo=UTC), "Asia/Kolkata (UTC+5:30)"),
        ("UTC", datetime(2026, 7, 4, 12, tzinfo=UTC), "UTC"),
    ],
)
def test_a_zone_is_named_with_its_offset_never_an_abbreviation(
    zone: str, at: datetime, label: str
) -> None:
    assert zone_label(zone, at) == label


def test_an_editors_local_time_names_the_zone() -> None:
    moment = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    assert local_text(moment, "Asia/Macau") == "2026-11-26 07:00 Asia/Macau (UTC+8)"
