"""Translations: the pt and zh catalogs cover every marked string, and emails render in them.

The catalog test extracts the strings afresh from the sources, with babel.cfg, so it fails
as soon as someone marks a new string (or changes one) without running `make messages` and
translating the new entries.
"""

# The Chinese strings use full-width punctuation on purpose, as Chinese text does.
# ruff: noqa: RUF001

from __future__ import annotations

import fnmatch
import os
import re
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from babel.messages import frontend
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

from newsletter.core.i18n import BABEL_LOCALES, LANGUAGE_TAGS, LOCALES_DIR, long_date
from newsletter.digests.render import compose_subject, greeting
from newsletter.email.render import render_email
from tests.conftest import ROOT

TRANSLATED = ("pt", "zh")
# As `make messages` passes them to --ignore-dirs: Babel's default would skip `_base`.
IGNORED_DIRS = (".*", "__pycache__", "var", "build")
# As `make messages` passes them to -k: Babel's own and the refusals core marks translatable.
KEYWORDS = {**DEFAULT_KEYWORDS, "translatable": None}
# A %-placeholder as Python formats it: %(name)s, %(num)d, %(ratio).1f, or a bare %s.
PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?[#0 +-]*(?:\d+|\*)?(?:\.\d+)?([diouxXeEfFgGcrsa%])")


def extracted_catalog() -> Catalog:
    """The strings the sources mark today, extracted the way `make messages` does."""
    parse = getattr(frontend, "parse_mapping_cfg", None) or frontend.parse_mapping
    with (ROOT / "babel.cfg").open(encoding="utf-8") as handle:
        method_map, options_map = parse(handle)

    def keep(path: str) -> bool:
        name = os.path.basename(path)
        return not any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED_DIRS)

    catalog = Catalog(project="newsletter")
    for filename, lineno, message, comments, context in extract_from_dir(
        ROOT, method_map, options_map, keywords=KEYWORDS, directory_filter=keep
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


@pytest.fixture(scope="module")
def extracted() -> Catalog:
    return extracted_catalog()


def read_catalog(language: str) -> Catalog:
    po_file = LOCALES_DIR / language / "LC_MESSAGES" / "messages.po"
    with po_file.open("rb") as handle:
        return read_po(handle, locale=BABEL_LOCALES[language])


def placeholders(text: str) -> set[tuple[str | None, str]]:
    return {(name, kind) for name, kind in PLACEHOLDER.findall(text) if kind != "%"}


def test_extraction_reads_the_templates_the_base_layout_and_the_python_code(
    extracted: Catalog,
) -> None:
    ids = {message.id for message in extracted if message.id}
    assert "Confirm my subscription" in ids  # templates/email/confirmation
    assert "Unsubscribe" in ids  # templates/email/_base, an underscore folder
    assert "Hello %(name)s," in ids  # newsletter/digests.py and the templates
    assert ("%(title)s — and %(num)d more", "%(title)s — and %(num)d more") in ids
    # The readers' pages, and the texts the routes give them (N_, written per page).
    assert "News of the Portuguese-speaking countries and China." in ids  # pages/base.html
    assert "Published" in ids  # pages/article.html
    assert "Check your inbox" in ids  # newsletter/web/reader.py, N_()
    assert "Not found" in ids  # newsletter/web/app.py, N_()


@pytest.mark.parametrize("language", TRANSLATED)
def test_catalog_translates_every_extracted_string(extracted: Catalog, language: str) -> None:
    catalog = read_catalog(language)
    problems = []
    for message in extracted:
        if not message.id:
            continue
        key = message.id[0] if isinstance(message.id, tuple) else message.id
        entry = catalog.get(key, context=message.context)
        if entry is None:
            problems.append(f"missing: {key!r}")
            continue
        if entry.fuzzy:
            problems.append(f"fuzzy: {key!r}")
        if isinstance(message.id, tuple) != isinstance(entry.id, tuple):
            problems.append(f"singular/plural mismatch (run `make messages`): {key!r}")
            continue
        wanted = set().union(*(placeholders(text) for text in _as_tuple(message.id)))
        translations = _as_tuple(entry.string)
        if isinstance(message.id, tuple) and len(translations) != catalog.num_plurals:
            problems.append(f"{len(translations)} plural forms, not {catalog.num_plurals}: {key!r}")
        for translation in translations:
            if not translation or not translation.strip():
                problems.append(f"untranslated: {key!r}")
            elif placeholders(translation) != wanted:
                problems.append(f"placeholders differ: {key!r} -> {translation!r}")
            elif wanted:
                # Newstyle gettext %-formats the translation: it must format cleanly.
                assert translation % {name: _sample(kind) for name, kind in wanted}
    assert not problems, f"newsletter/locales/{language}: run `make messages` and translate:\n" + (
        "\n".join(problems)
    )


def test_catalog_headers() -> None:
    portuguese, chinese = read_catalog("pt"), read_catalog("zh")
    assert portuguese.plural_forms == "nplurals=2; plural=(n != 1);"
    assert chinese.plural_forms == "nplurals=1; plural=0;"
    for catalog in (portuguese, chinese):
        assert catalog.charset.lower() == "utf-8"
        assert not catalog.fuzzy


CONTEXT = {
    "publisher": "Plataforma",
    "name": "Inês",
    "confirm_url": "http://x/confirm/t",
    "confirm_expires_in": 7 * 24 * 3600,
    "newsletter_names": "“Daily digest”",
    "unsubscribe_url": "http://x/u",
    "preferences_url": "http://x/p",
    "unsubscribe_mailto": "u@x",
}
CONFIRMATION = {
    "en": {
        "subject": "Please confirm your subscription to Plataforma",
        "text": ["Hello Inês,", "To confirm, open this link:\nhttp://x/confirm/t"],
        "html": ["Hello Inês,", "Confirm my subscription</a>"],
    },
    "pt": {
        "subject": "Plataforma: confirme a sua subscrição",
        "text": [
            "Olá Inês,",
            "Recebemos um pedido, provavelmente feito por si, para receber “Daily digest” de "
            "Plataforma neste endereço.",
            "Para confirmar, abra esta ligação:\nhttp://x/confirm/t",
            "A ligação expira dentro de 7 dias.",
        ],
        "html": ["Olá Inês,", "Confirmar a minha subscrição</a>"],
    },
    "zh": {
        "subject": "请确认您对Plataforma的订阅",
        "text": [
            "Inês，您好！",
            "有人（很可能是您本人）申请用此邮箱地址接收Plataforma的“Daily digest”。",
            "请打开以下链接完成确认：\nhttp://x/confirm/t",
        ],
        "html": ["Inês，您好！", "确认订阅</a>", "此链接7天内有效。"],
    },
}


@pytest.mark.parametrize("language", ["en", "pt", "zh"])
def test_confirmation_renders_in_each_language(language: str) -> None:
    rendered = render_email("confirmation", dict(CONTEXT), language=language)
    expected = CONFIRMATION[language]
    assert rendered.subject == expected["subject"]
    for phrase in expected["text"]:
        assert phrase in rendered.text
    for phrase in expected["html"]:
        assert phrase in rendered.html
    assert f'<html lang="{LANGUAGE_TAGS[language]}"' in rendered.html
    if language != "en":
        for english in ("Hello", "Somebody", "subscription", "ignore this email"):
            assert english not in rendered.text


@pytest.mark.parametrize(
    ("language", "subject", "footer"),
    [
        (
            "en",
            "Welcome to Plataforma",
            [
                "You receive this email because you subscribed to Plataforma.",
                "Manage your preferences: http://x/p",
                "Unsubscribe: http://x/u",
            ],
        ),
        (
            "pt",
            "Plataforma dá-lhe as boas-vindas",
            [
                "Recebe este email porque subscreveu uma newsletter de Plataforma.",
                "Gerir preferências: http://x/p",
                "Cancelar a subscrição: http://x/u",
            ],
        ),
        (
            "zh",
            "欢迎订阅Plataforma",
            [
                "您收到此邮件，是因为您订阅了Plataforma。",
                "管理订阅偏好：http://x/p",
                "退订：http://x/u",
            ],
        ),
    ],
)
def test_welcome_and_the_shared_footer_render_in_each_language(
    language: str, subject: str, footer: list[str]
) -> None:
    rendered = render_email("welcome", dict(CONTEXT), language=language)
    assert rendered.subject == subject
    for line in footer:
        assert line in rendered.text
    label = footer[-1].replace("：", ":").split(":")[0]
    assert f">{label}</a>" in rendered.html


def test_greeting() -> None:
    assert greeting("Inês", "en") == "Hello Inês,"
    assert greeting("Inês", "pt") == "Olá Inês,"
    assert greeting("Inês", "zh") == "Inês，您好！"
    assert greeting("", "pt") == "Olá,"
    assert greeting("", "zh") == "您好！"


def _articles(count: int) -> list[Any]:
    titles = ["Macau aprova o orçamento", "Second story", "Third story", "Fourth story"]
    return [SimpleNamespace(title=title) for title in titles[:count]]


@pytest.mark.parametrize(
    ("language", "count", "subject"),
    [
        ("en", 1, "Macau aprova o orçamento"),
        ("en", 2, "Macau aprova o orçamento — and 1 more"),
        ("en", 4, "Macau aprova o orçamento — and 3 more"),
        ("pt", 1, "Macau aprova o orçamento"),
        ("pt", 2, "Macau aprova o orçamento — e mais 1 notícia"),
        ("pt", 3, "Macau aprova o orçamento — e mais 2 notícias"),
        ("pt", 4, "Macau aprova o orçamento — e mais 3 notícias"),
        ("zh", 2, "Macau aprova o orçamento——另有1篇文章"),
        ("zh", 4, "Macau aprova o orçamento——另有3篇文章"),
    ],
)
def test_compose_subject_pluralises(language: str, count: int, subject: str) -> None:
    assert compose_subject(_articles(count), language) == subject


def test_long_date() -> None:
    moment = datetime(2026, 11, 26, 23, 30)
    assert long_date(moment, "pt") == "26 de novembro de 2026"
    assert long_date(moment, "zh") == "2026年11月26日"
    assert long_date(moment, "en") == "November 26, 2026"


def _as_tuple(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if value is None:
        return ("",)
    return value if isinstance(value, tuple) else (value,)


def _sample(kind: str) -> object:
    return 1 if kind in "diouxXc" else 1.5 if kind in "eEfFgG" else "x"
