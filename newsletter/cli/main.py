"""The `newsletter` command: run the service, and manage articles and subscribers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from newsletter.cli import running
from newsletter.cli.running import CommandError
from newsletter.cli.status import status_command
from newsletter.core.config import SEEDS_DIR, SettingsError, get_settings

F = TypeVar("F", bound=Callable[..., Any])


def main() -> NoReturn:
    """Entry point: click's errors become one line on stderr and a non-zero exit."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        # `newsletter` alone (or `newsletter digest`): the whole help, as --help gives it.
        click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        sys.exit(0)
    except click.exceptions.Abort:
        click.echo("newsletter: interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"newsletter: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"newsletter: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except SettingsError as exc:
        click.echo(f"newsletter: {exc}", err=True)
        sys.exit(1)
    sys.exit(0)


@click.group(
    # Wide enough that each command's line in the list is whole, not cut off with "...".
    context_settings={"help_option_names": ["-h", "--help"], "terminal_width": 120},
    no_args_is_help=True,
)
def cli() -> None:
    """A self-hosted email newsletter service."""
    from newsletter.app.queue import configure
    from newsletter.core.logs import configure_logging

    settings = get_settings()
    # Commands run once say only what went wrong; the services raise this to INFO.
    configure_logging(settings, level="WARNING")
    # The one Celery app, configured here and not at import: the commands that queue jobs,
    # `worker` and `beat` all use it.
    configure(settings)


cli.add_command(status_command, "status")

# --- running the service -------------------------------------------------------------


@cli.command()
@click.option("--no-seeds", is_flag=True, help="Do not import the articles under seeds/.")
def init(no_seeds: bool) -> None:
    """Create or upgrade the database and the `daily` newsletter (safe to run again)."""
    from newsletter.app.queue import declare_work_queue

    settings = _initialise(import_seeds=not no_seeds)
    if not settings.uses_redis:
        # The embedded broker's queue made now, not raced for by web and worker at their
        # start (a Procfile or systemd start runs them side by side, as `up` does).
        declare_work_queue(settings)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def web(host: str, port: int) -> None:
    """Serve the web pages and the API."""
    import uvicorn

    _log_events()

    proxies = running.follow_served_address(host, port).trusted_proxy_list
    # log_config=None: uvicorn keeps our handler (one line per event, JSON if asked).
    # X-Forwarded-For is believed only from NEWSLETTER_TRUSTED_PROXIES: uvicorn would
    # otherwise believe any process on this machine (127.0.0.1), and the client address
    # is what the signup limits count.
    uvicorn.run(
        "newsletter.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
    )


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a Celery worker (the same as `celery -A worker worker`); extra options go to Celery."""
    from newsletter.app.queue import celery

    celery.worker_main(["worker", "--loglevel=INFO", *ctx.args])


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def beat(ctx: click.Context) -> None:
    """Run the Celery beat scheduler; extra options go to Celery."""
    from newsletter.app.queue import celery

    celery.start(["beat", "--loglevel=INFO", *ctx.args])


@cli.command()
@click.option("--host", default=None, help="Default: NEWSLETTER_SINK_HOST (127.0.0.1).")
@click.option("--port", default=None, type=int, help="Default: NEWSLETTER_SINK_PORT (8025).")
def sink(host: str | None, port: int | None) -> None:
    """Run the built-in SMTP sink that keeps every message under var/outbox/."""
    from newsletter.sending.sink import run_sink

    _log_events()

    settings = get_settings()
    host, port = host or settings.sink_host, port or settings.sink_port
    click.echo(f"SMTP sink on {host}:{port}, keeping mail in {settings.outbox_dir}")
    run_sink(settings.outbox_dir, host=host, port=port)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def up(host: str, port: int) -> None:
    """Run everything: web, worker, scheduler and (with no relay set) the SMTP sink."""
    from newsletter.app.queue import declare_work_queue
    from newsletter.core.metrics import setup_multiprocess

    settings = running.follow_served_address(host, port)
    lock = running.hold_var_folder(settings)
    ports = [("web", host, port, "choose another with --port")]
    if settings.uses_sink:
        ports.append(
            ("SMTP sink", settings.sink_host, settings.sink_port, "set NEWSLETTER_SINK_PORT")
        )
    ports.append(
        (
            "bounce receiver",
            settings.bounce_host,
            settings.bounce_port,
            "set NEWSLETTER_BOUNCE_PORT",
        )
    )
    running.check_ports_free(ports)
    settings = _initialise(import_seeds=True)
    declare_work_queue(settings)
    # The children count into one fresh folder: yesterday's counts are not today's.
    setup_multiprocess(settings, wipe=True)
    me = [sys.executable, "-m", "newsletter"]
    commands = {
        "web": [*me, "web", "--host", host, "--port", str(port)],
        "worker": [*me, "worker", "--concurrency", "2"],
        "beat": [*me, "beat"],
        # Bounces, complaints and mailed unsubscribes, for the VERP addresses only.
        "bounces": [*me, "bounces", "serve"],
    }
    if settings.uses_sink:
        commands["sink"] = [*me, "sink"]
    _announce_admin_token(settings)
    click.echo(f"Signup page: {settings.base_url}/")
    if settings.uses_sink:
        click.echo(f"Outgoing mail is kept in {settings.outbox_dir}")
    try:
        failed = _supervise(commands)
    finally:
        lock.close()
    if failed:
        raise CommandError(f"{failed} stopped on its own; everything was stopped")


# --- articles ------------------------------------------------------------------------


@cli.group()
def articles() -> None:
    """Import and list articles."""


@articles.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def articles_import(paths: tuple[Path, ...]) -> None:
    """Import articles from files and folders (scraped pages, Markdown with front matter)."""
    from newsletter.articles import store as article_store
    from newsletter.core.db import session_scope

    with session_scope() as session:
        report = article_store.import_paths(session, list(paths))
    click.echo(
        f"imported {len(report.imported)}, unchanged {len(report.unchanged)}, "
        f"errors {len(report.errors)}"
    )
    for error in report.errors:
        click.echo(f"newsletter: {error}", err=True)
    if report.errors:
        sys.exit(1)


@articles.command("fetch")
@click.argument("urls", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
def articles_fetch(urls: tuple[str, ...], as_json: bool) -> None:
    """Import the entries of RSS or Atom feeds (asking only for what changed)."""
    from newsletter.articles import feeds
    from newsletter.core.db import session_scope

    with session_scope() as session:
        reports = feeds.fetch_configured_feeds(session, list(urls))
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in reports], ensure_ascii=False, indent=2))
    else:
        for report in reports:
            click.echo(
                f"{report.url}: {report.status}, {report.imported} new, "
                f"{report.unchanged} unchanged"
            )
    failed = [e for r in reports for e in r.errors if r.status == "failed"]
    for error in failed:
        click.echo(f"newsletter: {error}", err=True)
    if failed:
        sys.exit(1)


@articles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
def articles_list(as_json: bool, limit: int) -> None:
    """List articles, newest first."""
    from newsletter.articles import store as article_store
    from newsletter.core.db import session_scope

    with session_scope() as session:
        rows = [
            article_store.article_as_dict(a)
            for a in article_store.list_articles(session, limit=limit)
        ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        click.echo(f"{row['published_at'][:16]}  {row['language']}  {row['slug']}  {row['title']}")


# --- newsletters ---------------------------------------------------------------------


@cli.group()
def newsletters() -> None:
    """Add and list newsletters, and set their recurring schedules."""


@newsletters.command("add")
@click.argument("slug")
@click.option(
    "--name",
    "names",
    required=True,
    multiple=True,
    help="Its name; again as LANG=NAME for a language: --name pt='Resumo diário'.",
)
@click.option(
    "--description",
    "descriptions",
    multiple=True,
    help="Its description; again as LANG=TEXT for a language.",
)
@click.option("--language", default="en", show_default=True, help="pt, en or zh.")
@click.option("--time-zone", default="Europe/Lisbon", show_default=True)
@click.option("--schedule", "cron", default=None, help="Cron, e.g. '0 7 * * *' (local time).")
def newsletters_add(
    slug: str,
    names: tuple[str, ...],
    descriptions: tuple[str, ...],
    language: str,
    time_zone: str,
    cron: str | None,
) -> None:
    """Add a newsletter readers can subscribe to."""
    from newsletter.core.db import session_scope
    from newsletter.digests import schedules

    name, names_in = _texts_by_language(names, "--name")
    description, descriptions_in = _texts_by_language(descriptions, "--description")
    if name is None:
        raise CommandError("--name: give the newsletter's own name (without LANG=).")
    with _user_errors(), session_scope() as session:
        schedules.add_newsletter(
            session,
            slug=slug,
            name=name,
            language=language,
            time_zone=time_zone,
            cron=cron,
            description=description or "",
            names=names_in,
            descriptions=descriptions_in,
        )
    click.echo(f"added newsletter {slug}")


@newsletters.command("set")
@click.argument("slug")
@click.option(
    "--name",
    "names",
    multiple=True,
    help="Its name in a language, LANG=NAME: --name zh='每日摘要' (LANG= removes it).",
)
@click.option("--description", "descriptions", multiple=True, help="LANG=TEXT, as --name.")
@click.option("--from-name", default=None, help="Who its emails say they are from ('' resets).")
@click.option("--reply-to", default=None, help="Where replies to its emails go ('' for none).")
@click.option(
    "--story-order",
    type=click.Choice(["newest", "clicks"]),
    default=None,
    help="After pins and priority: newest first, or most clicked first by readers of the "
    "reader's language in the last 7 days (counts only).",
)
def newsletters_set(
    slug: str,
    names: tuple[str, ...],
    descriptions: tuple[str, ...],
    from_name: str | None,
    reply_to: str | None,
    story_order: str | None,
) -> None:
    """Give SLUG its name and description in the readers' languages, its sender's name,
    its Reply-To address and the order of each reader's stories."""
    from newsletter.core.db import session_scope
    from newsletter.subscribers import newsletters as newsletter_store

    name, names_in = _texts_by_language(names, "--name")
    description, descriptions_in = _texts_by_language(descriptions, "--description")
    if name is not None or description is not None:
        raise CommandError("--name and --description take LANG=TEXT here, e.g. pt='Resumo'.")
    if not (names_in or descriptions_in or story_order) and from_name is None and reply_to is None:
        raise CommandError(
            "nothing to set: give --name LANG=TEXT, --description LANG=TEXT, --from-name, "
            "--reply-to or --story-order."
        )
    with _user_errors(), session_scope() as session:
        newsletter = newsletter_store.set_sender(
            session, slug=slug, from_name=from_name, reply_to=reply_to
        )
        if names_in or descriptions_in:
            newsletter_store.translate_newsletter(
                session, slug=slug, names=names_in, descriptions=descriptions_in
            )
        if story_order is not None:
            newsletter_store.set_click_order(session, slug=slug, on=story_order == "clicks")
        given = ", ".join(sorted(newsletter.translations or {})) or "none"
        sender = f"from {newsletter.from_name or '(the publisher)'}"
        sender += f", replies to {newsletter.reply_to}" if newsletter.reply_to else ""
        order = "most clicked" if newsletter.order_by_clicks else "newest"
    click.echo(f"{slug}: names and descriptions in {given}; {sender}; stories {order} first")


def _texts_by_language(values: tuple[str, ...], option: str) -> tuple[str | None, dict[str, str]]:
    """`--name 'Daily' --name pt='Resumo diário'`: the own text, and the text per language."""
    from newsletter.core.config import LANGUAGES

    own: str | None = None
    by_language: dict[str, str] = {}
    for value in values:
        language, equals, text = value.partition("=")
        if equals and language.strip() in LANGUAGES:
            by_language[language.strip()] = text
        elif own is None:
            own = value
        else:
            raise CommandError(f"{option} is given twice without a language (LANG=TEXT).")
    return own, by_language


@newsletters.command("list")
@click.option("--json", "as_json", is_flag=True)
def newsletters_list(as_json: bool) -> None:
    """List newsletters with their schedules and subscribers."""
    from newsletter.core.db import session_scope
    from newsletter.digests import schedules

    with session_scope() as session:
        rows = schedules.describe_newsletters(session)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        zone = "on each reader's clock" if row["in_reader_zones"] else row["time_zone"]
        schedule = f"'{row['schedule']}' {zone}" if row["schedule"] else "no schedule"
        next_due = f", next {row['next_due'][:16]} UTC" if row["next_due"] else ""
        click.echo(
            f"{row['slug']}\t{row['name']}\t{row['language']}\t{schedule}{next_due}\t"
            f"{row['subscribers']} subscriber(s)"
        )


@newsletters.command("set-schedule")
@click.argument("slug")
@click.argument("cron", required=False, default="")
@click.option("--time-zone", default=None, help="IANA name, e.g. Asia/Macau.")
@click.option(
    "--local-time",
    default=None,
    help="Every day at this time (e.g. 07:00) on each reader's own clock, sent in waves.",
)
@click.option(
    "--reader-zones/--newsletter-zone",
    "in_reader_zones",
    default=None,
    help="Read the schedule on each reader's clock, or (back) on the newsletter's.",
)
def newsletters_set_schedule(
    slug: str,
    cron: str,
    time_zone: str | None,
    local_time: str | None,
    in_reader_zones: bool | None,
) -> None:
    """Send SLUG's digest on a cron schedule in its time zone; no CRON clears it."""
    from newsletter.core.db import session_scope
    from newsletter.digests import schedules

    with _user_errors(), session_scope() as session:
        newsletter = schedules.set_schedule(
            session,
            slug=slug,
            cron=cron,
            time_zone=time_zone,
            local_time=local_time,
            in_reader_zones=in_reader_zones,
        )
        if not newsletter.schedule_cron:
            described = "no schedule"
        elif newsletter.schedule_in_reader_zones:
            described = (
                f"'{newsletter.schedule_cron}' on each reader's clock "
                f"(readers without a zone: {newsletter.time_zone})"
            )
        else:
            described = f"'{newsletter.schedule_cron}' in {newsletter.time_zone}"
    click.echo(f"{slug}: {described}")


# --- digests -------------------------------------------------------------------------


@cli.group()
def digest() -> None:
    """Send, schedule, follow, pause, resume, cancel and preview digests."""


@digest.command("send")
@click.option("--newsletter", "newsletter_slug", default="daily", show_default=True)
@click.option(
    "--since",
    default=None,
    help="Start of the window (ISO 8601; no zone: the newsletter's); default: last digest.",
)
@click.option(
    "--at", "send_at", default=None, help="Send then (ISO 8601; no zone: the newsletter's)."
)
@click.option(
    "--local-time",
    default=None,
    help="Send at the next such time (e.g. 07:00) on each reader's own clock, in waves.",
)
@click.option("--subject", default=None, help="The editor's subject instead of the lead's title.")
@click.option(
    "--draft",
    is_flag=True,
    help="Keep it as a draft to edit, preview and test; `digest schedule ID` sends it.",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"id": …, "state": …}.')
@click.option("--yes", "-y", "yes", is_flag=True, help="Do not ask before sending (at a terminal).")
def digest_send(
    newsletter_slug: str,
    since: str | None,
    send_at: str | None,
    local_time: str | None,
    subject: str | None,
    draft: bool,
    as_json: bool,
    yes: bool,
) -> None:
    """Create a digest and send it now, or at --at, or in waves at --local-time.

    Says first how many readers it will reach, by language; at a terminal it then asks
    "Send? [y/N]" unless --yes. Run from a script (stdin not a terminal) it does not ask.
    A --draft is sent to nobody, and asks nothing.
    """
    from newsletter.app import editors
    from newsletter.app.unit_of_work import unit_of_work
    from newsletter.core.db import session_scope
    from newsletter.digests.waves import validate_local_time
    from newsletter.subscribers import audience
    from newsletter.subscribers import newsletters as newsletter_store

    if local_time is not None and send_at is not None:
        raise CommandError("Give --at or --local-time, not both.")
    if draft and local_time is not None:
        raise CommandError("A local-time send goes out in waves; it cannot be a draft.")
    # What the command was given is checked before the reach is said and the question
    # asked: a refusal is its one line on stderr, nothing else.
    with _user_errors(), session_scope() as session:
        newsletter = newsletter_store.get_by_slug(session, newsletter_slug)
        _parse_when(since, "--since", time_zone=newsletter.time_zone)
        _parse_when(send_at, "--at", time_zone=newsletter.time_zone)
        if local_time is not None:
            validate_local_time(local_time)
        line = audience.reach_line(
            audience.reach(session, newsletter_id=newsletter.id), newsletter.name
        )
    # With --json, stdout holds the JSON alone: the reach goes where people read.
    if not draft:
        click.echo(line, err=as_json)
    if (
        not draft
        and asks_before_sending(yes=yes, interactive=sys.stdin.isatty())
        and not click.confirm(
            "Send?" if local_time is None and send_at is None else "Schedule?", default=False
        )
    ):
        raise CommandError("Nothing sent.")
    if local_time is not None:
        with _user_errors(), unit_of_work() as work:
            newsletter = newsletter_store.get_by_slug(work.session, newsletter_slug)
            made = editors.send_at_local_time(
                work,
                newsletter_slug=newsletter_slug,
                local_time=local_time,
                since=_parse_when(since, "--since", time_zone=newsletter.time_zone),
                subject=subject,
            )
            shown = [(d.id, d.state, d.scheduled_for, d.local_time, d.local_day) for d in made]
        if as_json:
            click.echo(json.dumps([{"id": i, "state": state} for i, state, *_ in shown]))
            return
        for digest_id, state, when, at, day in shown:
            click.echo(f"digest {digest_id}: {state} for {when:%Y-%m-%d %H:%M} UTC ({at} {day})")
        return
    with _user_errors(), unit_of_work() as work:
        newsletter = newsletter_store.get_by_slug(work.session, newsletter_slug)
        digest = editors.create_digest(
            work,
            newsletter_slug=newsletter_slug,
            since=_parse_when(since, "--since", time_zone=newsletter.time_zone),
            send_at=_parse_when(send_at, "--at", time_zone=newsletter.time_zone),
            subject=subject,
            draft=draft,
        )
        digest_id, state, when = digest.id, digest.state, digest.scheduled_for
    if as_json:
        click.echo(json.dumps({"id": digest_id, "state": state}))
    elif draft:
        click.echo(
            f"digest {digest_id}: draft (edit it with `newsletter digest edit {digest_id}`, "
            f"send it with `newsletter digest schedule {digest_id}`)"
        )
    else:
        click.echo(f"digest {digest_id}: {state} for {when:%Y-%m-%d %H:%M} UTC" if when else "")


@digest.command("edit")
@click.argument("digest_id", type=int)
@click.option(
    "--subject",
    "subjects",
    multiple=True,
    metavar="[LANG=]TEXT",
    help="The subject in one language (pt=…), or in every language without its own.",
)
@click.option("--note", "notes", multiple=True, metavar="LANG=TEXT", help="The editor's note.")
@click.option(
    "--note-file",
    "note_files",
    multiple=True,
    metavar="LANG=PATH",
    help="The editor's note, read from a Markdown file.",
)
@click.option("--pin", "pins", multiple=True, metavar="ARTICLE", help="Pin (id or slug), last.")
@click.option("--unpin", "unpins", multiple=True, metavar="ARTICLE")
@click.option("--exclude", "excludes", multiple=True, metavar="ARTICLE", help="Leave it out.")
@click.option("--include", "includes", multiple=True, metavar="ARTICLE", help="Take it back.")
@click.option("--order", default=None, metavar="A,B,C", help="The pinned stories, in this order.")
def digest_edit(
    digest_id: int,
    subjects: tuple[str, ...],
    notes: tuple[str, ...],
    note_files: tuple[str, ...],
    pins: tuple[str, ...],
    unpins: tuple[str, ...],
    excludes: tuple[str, ...],
    includes: tuple[str, ...],
    order: str | None,
) -> None:
    """Shape a digest before it starts: its note and subject per language, and its stories
    pinned to the top (in order, for every reader) or left out. An empty text takes a
    language's note or subject away."""
    from newsletter.app import editors
    from newsletter.app.unit_of_work import unit_of_work
    from newsletter.digests import lifecycle

    untagged, intro = _texts_by_language(notes, "--note")
    untagged_file, files = _texts_by_language(note_files, "--note-file")
    if untagged is not None or untagged_file is not None:
        raise CommandError("--note and --note-file take LANG=TEXT, with LANG one of pt, en, zh.")
    for language, path in files.items():
        try:
            intro[language] = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read the note {path}: {exc}") from None
    every_language, per_language = _texts_by_language(subjects, "--subject")
    with _user_errors(), unit_of_work() as work:
        digest = lifecycle.get_digest(work.session, digest_id)
        pinned = list(digest.pinned or ())
        excluded = list(digest.excluded or ())
        if order is not None:
            pinned = [_article_id(work.session, a) for a in order.split(",") if a.strip()]
        pinned += [i for i in (_article_id(work.session, a) for a in pins) if i not in pinned]
        unpinned = {_article_id(work.session, a) for a in unpins}
        added = [_article_id(work.session, a) for a in excludes]
        taken_back = {_article_id(work.session, a) for a in includes}
        changes: dict[str, Any] = {
            "pinned": [i for i in pinned if i not in unpinned],
            "excluded": [i for i in dict.fromkeys(excluded + added) if i not in taken_back],
        }
        if intro:
            changes["intro"] = intro
        if per_language:
            changes["subjects"] = per_language
        if every_language is not None:
            changes["subject"] = every_language
        editors.edit_digest(work, digest_id=digest_id, **changes)
        shown = (digest.state, list(digest.pinned or ()), list(digest.excluded or ()))
        languages = sorted(digest.intro or {})
    state, now_pinned, now_excluded = shown
    click.echo(
        f"digest {digest_id}: {state}; pinned {now_pinned or 'none'}, left out "
        f"{now_excluded or 'none'}, note in {', '.join(languages) or 'no language'}"
    )


@digest.command("test")
@click.argument("digest_id", type=int, required=False)
@click.option(
    "--newsletter",
    "newsletter_slug",
    default=None,
    help="Without an ID: the newsletter's next digest, as it would go now.",
)
@click.option(
    "--to",
    "to",
    multiple=True,
    metavar="EMAIL",
    help="Where it goes (repeat for more); default: NEWSLETTER_TEST_RECIPIENTS.",
)
@click.option("--as", "as_reader", default=None, metavar="EMAIL", help="As this reader gets it.")
@click.option("--language", default=None, help="Only this language's copy (pt, en, zh).")
@click.option("--wait", default=60, show_default=True, help="Seconds to wait for the worker.")
def digest_test(
    digest_id: int | None,
    newsletter_slug: str | None,
    to: tuple[str, ...],
    as_reader: str | None,
    language: str | None,
    wait: int,
) -> None:
    """Send a digest as it stands, marked [TEST], to your own addresses: one copy per
    language its readers read (or --language, or --as a reader). Recorded, never a
    delivery, never to a suppressed address; its links act for nobody."""
    from newsletter.app import editors
    from newsletter.app.unit_of_work import unit_of_work
    from newsletter.core.db import session_scope
    from newsletter.core.models import TestSend, TestSendStatus

    if digest_id is not None and newsletter_slug is not None:
        raise CommandError("Give a digest's ID or --newsletter, not both.")
    with _user_errors(), unit_of_work() as work:
        test = editors.test_send(
            work,
            to=list(to),
            settings=get_settings(),
            digest_id=digest_id,
            newsletter_slug=newsletter_slug,
            language=language,
            as_reader=as_reader,
        )
        test_id = test.id
    deadline = time.monotonic() + wait
    while True:
        with session_scope() as session:
            found = session.get(TestSend, test_id)
            assert found is not None
            status, recipients = found.status, list(found.recipients)
            subjects, detail = list(found.subjects), found.detail
        if status != TestSendStatus.QUEUED or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    for subject in subjects:
        click.echo(f"subject: {subject}")
    for r in recipients:
        click.echo(f"{r['email']}: {r['outcome']}" + (f" ({r['detail']})" if r["detail"] else ""))
    if status == TestSendStatus.QUEUED:
        raise CommandError(
            f"Test send {test_id} is still waiting for a worker after {wait} s "
            "(is `newsletter worker` running?)."
        )
    if not any(r["outcome"] == "sent" for r in recipients):
        raise CommandError(detail or f"Test send {test_id} reached nobody.")


@digest.command("schedule")
@click.argument("digest_id", type=int)
@click.option(
    "--at", "send_at", default=None, help="Send then (ISO 8601; no zone: the newsletter's)."
)
@click.option("--yes", "-y", "yes", is_flag=True, help="Do not ask before sending (at a terminal).")
def digest_schedule(digest_id: int, send_at: str | None, yes: bool) -> None:
    """Send a draft now, or at --at. Says first how many readers it will reach; at a
    terminal it asks unless --yes."""
    from newsletter.app import editors
    from newsletter.app.unit_of_work import unit_of_work
    from newsletter.core.db import session_scope
    from newsletter.digests import lifecycle
    from newsletter.subscribers import audience

    with _user_errors(), session_scope() as session:
        digest = lifecycle.get_digest(session, digest_id)
        if "schedule" not in lifecycle.allowed_actions(digest.state):
            raise lifecycle.DigestActionError(
                f"Digest {digest_id} is {digest.state}; only a draft can be scheduled."
            )
        time_zone = digest.newsletter.time_zone
        when = _parse_when(send_at, "--at", time_zone=time_zone)
        line = audience.reach_line(
            audience.reach(session, newsletter_id=digest.newsletter_id), digest.newsletter.name
        )
    click.echo(line)
    if asks_before_sending(yes=yes, interactive=sys.stdin.isatty()) and not click.confirm(
        "Schedule?" if when else "Send?", default=False
    ):
        raise CommandError("Nothing sent.")
    with _user_errors(), unit_of_work() as work:
        scheduled = editors.schedule_digest(work, digest_id=digest_id, send_at=when)
        state, due = scheduled.state, scheduled.scheduled_for
    click.echo(f"digest {digest_id}: {state} for {due:%Y-%m-%d %H:%M} UTC" if due else state)


def _article_id(session: Any, reference: str) -> int:
    """An article named by its id or its slug."""
    from newsletter.articles.store import get_article_by_slug
    from newsletter.core.models import Article

    reference = reference.strip()
    if reference.isdigit() and session.get(Article, int(reference)) is not None:
        return int(reference)
    article = get_article_by_slug(session, reference)
    if article is None:
        raise CommandError(f"There is no article {reference!r} (give its number or its slug).")
    return article.id


def asks_before_sending(*, yes: bool, interactive: bool) -> bool:
    """Whether `digest send` asks before mailing the list: at a terminal, unless --yes.
    Scripts, cron jobs and drills (stdin not a terminal) go on without asking, as before."""
    return interactive and not yes


@digest.command("status")
@click.argument("digest_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def digest_status(digest_id: int, as_json: bool) -> None:
    """Where a digest stands: state and counts, and why each reader not mailed was not."""
    from newsletter.core.db import session_scope
    from newsletter.digests import outcomes, reports

    with _user_errors(), session_scope() as session:
        status = reports.digest_status(session, digest_id)
        ended = outcomes.digest_outcomes(session, digest_id)
    if as_json:
        click.echo(json.dumps({**status, "outcomes": ended.as_dict()}, ensure_ascii=False))
        return
    counts = status["counts"]
    click.echo(f"digest {status['id']} ({status['newsletter']}): {status['state']}")
    click.echo(
        f"  {counts['sent']} sent, {counts['queued']} queued, {counts['bounced']} bounced, "
        f"{counts['failed']} failed, {counts['skipped']} skipped, of {counts['total']}"
    )
    if ended.nothing_to_send:
        click.echo(f"  Nothing to send: {ended.nothing_to_send}")
    elif status["note"]:
        click.echo(f"  {status['note']}")
    for reason in ended.reasons:
        examples = ", ".join(e.address for e in reason.examples)
        click.echo(f"  {reason.count} {reason.outcome}: {reason.words}")
        if examples:
            click.echo(f"      e.g. {examples}")


@digest.command("report")
@click.argument("digest_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="As GET /api/digests/ID/report gives it.")
@click.option("--csv", "as_csv", is_flag=True, help="As a spreadsheet.")
def digest_report(digest_id: int, as_json: bool, as_csv: bool) -> None:
    """What its readers read: delivered, readers who clicked, click rate; by story and
    language; machines' clicks apart (README "Analytics and privacy")."""
    from newsletter.analytics import reports as analytics
    from newsletter.core.db import session_scope
    from newsletter.digests import lifecycle

    with _user_errors(), session_scope() as session:
        lifecycle.get_digest(session, digest_id)
        report = analytics.digest_report(session, digest_id=digest_id)
    if as_csv:
        click.echo(analytics.report_csv(report), nl=False)
        return
    if as_json:
        click.echo(json.dumps(analytics.as_dict(report), ensure_ascii=False))
        return
    rate = f"{report.click_rate:.1%}" if report.click_rate is not None else "-"
    click.echo(
        f"digest {digest_id}: {report.delivered:,} delivered, {report.readers:,} readers "
        f"clicked ({rate}), {report.clicks:,} clicks, {report.machine_clicks:,} machine clicks"
    )
    for story in report.stories:
        click.echo(
            f"  {story.readers:>6,} readers  {story.clicks:>6,} clicks  "
            f"{story.machine:>6,} machine  {story.title} ({story.language})"
        )
    for group in report.languages:
        share = f"{group.rate:.1%}" if group.rate is not None else "-"
        click.echo(f"  {group.name}: {group.readers:,} of {group.delivered or 0:,} ({share})")


@digest.command("subject-test")
@click.argument("digest_id", type=int)
@click.argument("subjects", nargs=-1, metavar="[FIRST SECOND]")
@click.option("--sample", type=int, default=None, help="Percent of the readers (2-50; 10).")
@click.option("--wait", type=int, default=None, help="Minutes before deciding (5-2880; 240).")
@click.option("--pick", type=click.Choice(["1", "2"]), default=None, help="Decide now, by hand.")
def digest_subject_test(
    digest_id: int,
    subjects: tuple[str, ...],
    sample: int | None,
    wait: int | None,
    pick: str | None,
) -> None:
    """Try two subjects on a sample before the rest go with the one more readers clicked
    (before the digest starts; no subjects: no test); or, with --pick, send the rest now
    with the first (1) or the second (2)."""
    from newsletter.app import editors
    from newsletter.app.unit_of_work import unit_of_work
    from newsletter.core.config import get_settings
    from newsletter.digests import reports

    if pick is not None and subjects:
        raise CommandError("Give two subjects to set a test, or --pick to decide one.")
    with _user_errors(), unit_of_work() as work:
        if pick is not None:
            editors.pick_subject(work, digest_id=digest_id, subject=int(pick) - 1)
        else:
            editors.set_subject_test(
                work,
                digest_id=digest_id,
                subjects=list(subjects),
                sample_percent=sample,
                wait_minutes=wait,
                settings=get_settings(),
            )
        test = reports.digest_status(work.session, digest_id)["subject_test"]
    if test is None:
        click.echo(f"digest {digest_id}: no subject test")
    elif test["phase"] == "decided":
        click.echo(
            f"digest {digest_id}: sending the rest with {test['subjects'][test['winner']]!r}"
        )
    else:
        click.echo(
            f"digest {digest_id}: {test['subjects'][0]!r} against {test['subjects'][1]!r} on "
            f"{test['sample_percent']}% of the readers, decided {test['wait_minutes']} minutes "
            "after the sample is sent"
        )


@digest.command("cancel")
@click.argument("digest_id", type=int)
def digest_cancel(digest_id: int) -> None:
    """Stop a digest for good; what was not sent is skipped."""
    from newsletter.app import editors
    from newsletter.app.unit_of_work import unit_of_work

    with _user_errors(), unit_of_work() as work:
        editors.cancel_digest(work, digest_id=digest_id)
    click.echo(f"digest {digest_id}: cancelled")


@digest.command("pause")
@click.argument("digest_id", type=int)
def digest_pause(digest_id: int) -> None:
    """Hold a digest; `resume` goes on where it stopped."""
    from newsletter.app import editors
    from newsletter.app.unit_of_work import unit_of_work

    with _user_errors(), unit_of_work() as work:
        editors.pause_digest(work, digest_id=digest_id)
    click.echo(f"digest {digest_id}: paused")


@digest.command("resume")
@click.argument("digest_id", type=int)
def digest_resume(digest_id: int) -> None:
    """Take a paused digest up again."""
    from newsletter.app import editors
    from newsletter.app.unit_of_work import unit_of_work

    with _user_errors(), unit_of_work() as work:
        state = editors.resume_digest(work, digest_id=digest_id).state
    click.echo(f"digest {digest_id}: {state}")


@digest.command("preview")
@click.option("--newsletter", "newsletter_slug", default="daily", show_default=True)
@click.option("--subscriber", "subscriber_email", default=None, help="As this reader gets it.")
@click.option(
    "--since", default=None, help="Start of the window (ISO 8601; no zone: the newsletter's)."
)
@click.option("--subject", default=None, help="The editor's subject instead of the lead's title.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "html", "eml"]),
    default="text",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def digest_preview(
    newsletter_slug: str,
    subscriber_email: str | None,
    since: str | None,
    subject: str | None,
    output_format: str,
    output: Path | None,
) -> None:
    """Show exactly what a reader would get if the digest were sent now."""
    from email import message_from_bytes, policy

    from newsletter.core.db import session_scope
    from newsletter.digests import render as digests
    from newsletter.subscribers import newsletters as newsletter_store

    with _user_errors(), session_scope() as session:
        newsletter = newsletter_store.get_by_slug(session, newsletter_slug)
        result = digests.preview(
            session,
            newsletter_slug=newsletter_slug,
            settings=get_settings(),
            subscriber_email=subscriber_email,
            since=_parse_when(since, "--since", time_zone=newsletter.time_zone),
            subject=_clean_subject(subject),
        )
    if output_format == "eml":
        data = result.message.data
    else:
        message = message_from_bytes(result.message.data, policy=policy.default)
        part = message.get_body(preferencelist=("plain" if output_format == "text" else "html",))
        data = str(part.get_content() if part else "").encode()
    if output:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_bytes(data)
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror}") from None
        click.echo(f"wrote {output} ({len(result.selection.article_ids)} article(s))")
    elif output_format == "eml":
        click.echo(data.decode(errors="replace"), nl=False)
    else:
        # Text and HTML end with a line break, as a terminal and `> file` expect.
        text = data.decode(errors="replace")
        click.echo(text, nl=not text.endswith("\n"))


# --- subscribers ---------------------------------------------------------------------


@cli.group()
def subscribers() -> None:
    """Add, import, list, show, export and erase subscribers."""


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default=None)
@click.option("--language", default=None, help="pt, en or zh.")
@click.option("--topics", default=None, help="Comma-separated topics.")
@click.option("--newsletter", "newsletter_slug", default="daily", show_default=True)
@click.option(
    "--confirmed",
    is_flag=True,
    help="Subscribed at once (consent given elsewhere): no email, unless --welcome.",
)
@click.option("--welcome", is_flag=True, help="With --confirmed: send them the welcome email.")
def subscribers_add(
    email: str,
    name: str | None,
    language: str | None,
    topics: str | None,
    newsletter_slug: str,
    confirmed: bool,
    welcome: bool,
) -> None:
    """Add a subscriber; without --confirmed they are sent the confirmation email."""
    from newsletter.app import editors
    from newsletter.app.unit_of_work import unit_of_work
    from newsletter.subscribers import store

    form = store.SignupForm(
        email=email, name=name, newsletters=[newsletter_slug], topics=topics, language=language
    )
    with _user_errors(), unit_of_work() as work:
        outcome = editors.add_subscriber(
            work, form=form, confirmed=confirmed, settings=get_settings(), welcome=welcome
        )
    if outcome.suppressed:
        raise CommandError(f"{email} is on the suppression list and cannot be added")
    if outcome.send_confirmation and outcome.subscriber_id is not None:
        click.echo(f"added {email} (pending: confirmation email queued)")
    elif outcome.newly_confirmed and outcome.subscriber_id is not None:
        click.echo(f"added {email} (subscribed{'; welcome email queued' if welcome else ''})")
    else:
        click.echo(f"{email} is already known; nothing to send")


@subscribers.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Report what would change, change nothing.")
@click.option("--send-confirmations", is_flag=True, help="Email the rows left pending.")
@click.option(
    "--welcome", is_flag=True, help="Send the welcome to the rows subscribed (confirmed)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def subscribers_import(
    csv_file: Path, dry_run: bool, send_confirmations: bool, welcome: bool, as_json: bool
) -> None:
    """Import subscribers from CSV: email,name,language,topics,newsletter,confirmed."""
    from newsletter.app import editors
    from newsletter.app.unit_of_work import unit_of_work

    # newline="": quoted cells may hold line breaks; utf-8-sig: spreadsheets write a BOM.
    with (
        _user_errors(),
        csv_file.open(encoding="utf-8-sig", newline="") as stream,
        unit_of_work() as work,
    ):
        report = editors.import_subscribers(
            work,
            stream=stream,
            settings=get_settings(),
            dry_run=dry_run,
            send_confirmations=send_confirmations,
            welcome=welcome,
        )
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        prefix = "would add" if dry_run else "added"
        click.echo(
            f"{prefix} {report.added}, updated {report.updated}, unchanged "
            f"{report.unchanged}, refused {len(report.refused)}"
        )
        for line, reason in report.refused:
            click.echo(f"  line {line}: {reason}")


@subscribers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one subscriber a line.")
def subscribers_list(as_json: bool) -> None:
    """List every subscriber with their status (pending, subscribed, unsubscribed, bounced,
    complained or suppressed), streamed a thousand at a time; a header row first."""
    from newsletter.core.db import session_scope
    from newsletter.subscribers import reader_status, store

    after = 0
    if not as_json:
        click.echo("email\tstatus\tlanguage\tsubscriptions")
    with session_scope() as session:
        slugs = {n.id: n.slug for n in _newsletters(session)}
        while batch := store.list_subscribers(session, after_id=after):
            statuses = reader_status.statuses_of(session, [s.id for s in batch])
            for s in batch:
                states = {slugs[x.newsletter_id]: x.status for x in s.subscriptions}
                if as_json:
                    row = {
                        "email": s.email,
                        "name": s.name,
                        "language": s.language,
                        "status": statuses[s.id],
                        "subscriptions": states,
                    }
                    click.echo(json.dumps(row, ensure_ascii=False))
                else:
                    subs = ", ".join(f"{k}:{v}" for k, v in states.items())
                    click.echo(f"{s.email}\t{statuses[s.id]}\t{s.language}\t{subs}")
            after = batch[-1].id
            session.expunge_all()


@subscribers.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True)
def subscribers_show(email: str, as_json: bool) -> None:
    """Show one subscriber: status, subscriptions and events."""
    from newsletter.core.db import session_scope
    from newsletter.subscribers import store

    with _user_errors(), session_scope() as session:
        subscriber = store.find_by_email(session, email)
        data = store.export_data(session, subscriber_id=subscriber.id)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    click.echo(f"{data['email']}  ({data['name'] or 'no name'})  status: {data['status']}")
    click.echo(
        f"language {data['language']}, time zone {data['time_zone']}, "
        f"topics {', '.join(data['topics']) or 'all'}, soft bounces {data['soft_bounce_count']}"
    )
    click.echo("subscriptions:")
    for sub in data["subscriptions"]:
        click.echo(
            f"  {sub['newsletter']}: {sub['status']} (since {sub['created_at'][:19]}, "
            f"consent: {sub['consent_source'] or '-'})"
        )
    click.echo("events:")
    for event in data["events"]:
        click.echo(f"  {event['created_at'][:19]}  {event['kind']}  {event['newsletter'] or ''}")


@subscribers.command("export-data")
@click.argument("email")
def subscribers_export_data(email: str) -> None:
    """Print everything stored about one subscriber as JSON (GDPR access request)."""
    from newsletter.core.db import session_scope
    from newsletter.subscribers import store

    with _user_errors(), session_scope() as session:
        subscriber = store.find_by_email(session, email)
        data = store.export_data(session, subscriber_id=subscriber.id)
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@subscribers.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def subscribers_erase(email: str, yes: bool) -> None:
    """Erase a subscriber's personal data; a hash stays on the suppression list."""
    from newsletter.app import editors
    from newsletter.app.unit_of_work import unit_of_work

    if not yes and sys.stdin.isatty():
        click.confirm(f"Erase everything about {email}?", abort=True)
    with _user_errors(), unit_of_work() as work:
        editors.erase_subscriber(work, email=email)
    click.echo(f"erased {email}; its hash stays on the suppression list")


@subscribers.command("reset-bounces")
@click.argument("email")
def subscribers_reset_bounces(email: str) -> None:
    """Make a bounced reader deliverable again, with a fresh soft-bounce score."""
    from newsletter.bounces import policy as bounces
    from newsletter.core.db import session_scope
    from newsletter.subscribers import store

    with _user_errors(), session_scope() as session:
        subscriber = store.find_by_email(session, email)
        bounces.reset_bounces(session, subscriber_id=subscriber.id)
    click.echo(f"{email}: bounces reset")


# --- bounces and suppressions --------------------------------------------------------


@cli.group(name="bounces")
def bounces_group() -> None:
    """Receive, process and inspect bounces and complaints."""


@bounces_group.command("serve")
@click.option("--host", default=None, help="Default: NEWSLETTER_BOUNCE_HOST (127.0.0.1).")
@click.option("--port", default=None, type=int, help="Default: NEWSLETTER_BOUNCE_PORT (2525).")
def bounces_serve(host: str | None, port: int | None) -> None:
    """Receive bounces, complaints and mailed unsubscribes over SMTP (our VERP addresses only)."""
    from newsletter.app import pipeline
    from newsletter.app.queue import CeleryQueue
    from newsletter.bounces.doors.smtp import run_receiver

    _log_events()
    settings = get_settings()
    host, port = host or settings.bounce_host, port or settings.bounce_port
    click.echo(f"bounce receiver on {host}:{port} for bounces+…@{settings.mail_domain}")
    queue = CeleryQueue()
    run_receiver(
        settings,
        lambda raw, rcpts: pipeline.receive_inbound(queue=queue, raw=raw, recipients=rcpts),
        host=host,
        port=port,
    )


@bounces_group.command("process")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def bounces_process(paths: tuple[Path, ...]) -> None:
    """Process bounce messages from files, folders or Maildirs."""
    from newsletter.bounces import policy as bounces
    from newsletter.bounces.parsing import BounceParseError
    from newsletter.core.db import session_scope

    settings = get_settings()
    failures = 0
    for path in paths:
        try:
            found = list(_messages_at(path))
        except OSError as exc:
            click.echo(f"newsletter: {path}: {exc.strerror or exc}", err=True)
            failures += 1
            continue
        for name, raw in found:
            try:
                with session_scope() as session:
                    outcome = bounces.process_message(session, raw, settings=settings)
            except BounceParseError as exc:
                click.echo(f"newsletter: {name}: {exc}", err=True)
                failures += 1
                continue
            click.echo(f"{name}: {outcome.kind}, {outcome.action}")
    if failures:
        sys.exit(1)


@bounces_group.command("parse")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def bounces_parse(path: Path, as_json: bool) -> None:
    """Say what a message is (hard, soft, complaint, none) without changing anything."""
    from newsletter.bounces import policy as bounces
    from newsletter.bounces.parsing import BounceParseError, parse_bounce
    from newsletter.core.db import session_scope

    try:
        report = parse_bounce(path.read_bytes())
    except BounceParseError as exc:
        raise CommandError(f"{path}: {exc}") from None
    delivery_id = None
    with session_scope() as session:
        delivery_id = bounces.find_reader(
            session,
            settings=get_settings(),
            kind=report.kind,
            verp_tokens=report.verp_tokens,
            addresses=report.recipients,
            message_id=report.original_message_id,
            mailed_from=report.sender_domain or "",
        ).delivery_id
        session.rollback()
    result = {
        "kind": report.kind,
        "recipients": report.recipients,
        "status": report.status,
        "delivery": delivery_id,
    }
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(
            f"{report.kind}: {', '.join(report.recipients) or 'no recipient'}"
            f" ({report.status or 'no status'}), delivery {delivery_id or 'unknown'}"
        )


@cli.group(name="suppressions")
def suppressions_group() -> None:
    """The addresses never mailed: list, add, remove, import and export."""


@suppressions_group.command("list")
def suppressions_list() -> None:
    from newsletter.core.db import session_scope
    from newsletter.subscribers import suppressions

    with session_scope() as session:
        for entry in suppressions.entries(session):
            shown = entry.email or f"(erased, hash {entry.email_hash[:12]}…)"
            click.echo(f"{shown}\t{entry.reason}\t{entry.created_at:%Y-%m-%d}")


@suppressions_group.command("add")
@click.argument("email")
@click.option("--reason", default="manual", show_default=True)
def suppressions_add(email: str, reason: str) -> None:
    from newsletter.core.db import session_scope
    from newsletter.subscribers import suppressions

    with _user_errors(), session_scope() as session:
        added = suppressions.add(session, email=email, reason=reason)
    click.echo(f"{email}: {'suppressed' if added else 'already suppressed'}")


@suppressions_group.command("remove")
@click.argument("email")
def suppressions_remove(email: str) -> None:
    from newsletter.core.db import session_scope
    from newsletter.subscribers import suppressions

    with _user_errors(), session_scope() as session:
        removed = suppressions.remove(session, email=email)
    if not removed:
        raise CommandError(f"{email} is not on the suppression list")
    click.echo(f"{email}: no longer suppressed")


@suppressions_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def suppressions_import(csv_file: Path) -> None:
    from newsletter.core.db import session_scope
    from newsletter.subscribers import suppressions

    with (
        _user_errors(),
        csv_file.open(encoding="utf-8-sig", newline="") as stream,
        session_scope() as session,
    ):
        report = suppressions.import_csv(session, stream)
    click.echo(f"added {report.added}, already there {report.known}, refused {len(report.refused)}")
    for line, reason in report.refused:
        click.echo(f"  line {line}: {reason}")


@suppressions_group.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def suppressions_export(output: Path | None) -> None:
    from newsletter.core.db import session_scope
    from newsletter.subscribers import suppressions

    with session_scope() as session:
        if output is None:
            suppressions.export_csv(session, sys.stdout)
            return
        with output.open("w", newline="", encoding="utf-8") as stream:
            count = suppressions.export_csv(session, stream)
    click.echo(f"wrote {count} entries to {output}")


@cli.command("export")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def export_command(folder: Path) -> None:
    """Write the list out to move house: subscriptions, readers and suppressions as CSV.

    In an empty FOLDER: subscriptions.csv (what `subscribers import` reads), readers.csv
    (every reader and their state) and suppressions.csv (what `suppressions import` reads).
    """
    from newsletter.core.db import session_scope
    from newsletter.subscribers import exporting

    if folder.exists() and any(folder.iterdir()):
        raise CommandError(f"{folder} is not empty: give an empty or new folder")
    with session_scope() as session:
        moved = exporting.export_for_move(session, folder)
    click.echo(
        f"wrote {moved.subscriptions} subscription(s), {moved.readers} reader(s) and "
        f"{moved.suppressions} suppression(s) to {folder}"
    )


@suppressions_group.command("rekey")
def suppressions_rekey() -> None:
    """After changing NEWSLETTER_SECRET_KEY: the address hashes made again under the new key.

    Erased readers' entries keep only their hash, which no new key can carry over: those
    addresses are no longer suppressed (they can sign up again, with double opt-in).
    """
    from newsletter.core.db import session_scope
    from newsletter.subscribers import suppressions

    with session_scope() as session:
        done = suppressions.rekey(session)
    click.echo(
        f"re-keyed {done.subscribers} subscriber(s) and {done.suppressions} suppressed "
        f"address(es); {done.erased} erased entr{'y' if done.erased == 1 else 'ies'} kept "
        "their old hash"
    )


def _messages_at(path: Path) -> Any:
    from newsletter.bounces.doors.mailbox import messages_at

    return messages_at(path)


# --- helpers -------------------------------------------------------------------------


def _log_events() -> None:
    """A long-running service logs one line per event (INFO), not only its problems."""
    import logging

    logging.getLogger().setLevel(logging.INFO)


def _initialise(*, import_seeds: bool) -> Any:
    from newsletter.core.db import get_engine, session_scope
    from newsletter.core.schema import upgrade
    from newsletter.subscribers import newsletters

    settings = get_settings()
    upgrade(get_engine())
    with session_scope() as session:
        newsletters.ensure_default_newsletter(
            session, language=settings.default_language, time_zone=settings.default_time_zone
        )
    if import_seeds and SEEDS_DIR.is_dir():
        from newsletter.articles import store as article_store

        with session_scope() as session:
            report = article_store.import_paths(session, [SEEDS_DIR])
        for error in report.errors:
            click.echo(f"newsletter: {error}", err=True)
        if report.imported:
            click.echo(f"imported {len(report.imported)} seed article(s)")
    click.echo(f"database ready: {_safe_url(settings.database_url)}")
    return settings


def _announce_admin_token(settings: Any) -> None:
    """The admin token, shown once: when this start generated it. After that, where it is
    (a terminal's scrollback or a service's journal is no place to keep a secret)."""
    kept = settings.var_dir / "admin_token"
    if "admin_token" in settings.generated_secrets:
        click.echo(f"Admin token (generated now, kept in {kept}): {settings.admin_token}")
    elif kept.is_file() and kept.read_text().strip() == settings.admin_token:
        click.echo(f"Admin token: in {kept}")
    else:
        click.echo("Admin token: the one NEWSLETTER_ADMIN_TOKEN gives")


def _supervise(commands: dict[str, list[str]]) -> str | None:
    """Start each command; stop them all when one dies or on Ctrl-C / SIGTERM. The name of
    the one that died on its own, if one did (`up` then exits non-zero)."""
    children = {name: subprocess.Popen(argv) for name, argv in commands.items()}
    failed: str | None = None

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    click.echo(
                        f"newsletter: {name} stopped (exit {child.returncode}); stopping all",
                        err=True,
                    )
                    failed = name
                    raise KeyboardInterrupt
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
    return failed


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the services' refusals into one-line CLI errors."""
    from newsletter.core.validation import InvalidInput
    from newsletter.digests.lifecycle import DigestActionError, UnknownDigest
    from newsletter.digests.render import NothingToSend
    from newsletter.subscribers.newsletters import UnknownNewsletter
    from newsletter.subscribers.store import UnknownSubscriber

    try:
        yield
    except (
        InvalidInput,
        UnknownSubscriber,
        UnknownNewsletter,
        NothingToSend,
        UnknownDigest,
        DigestActionError,
    ) as exc:
        raise CommandError(str(exc)) from None


def _parse_when(value: str | None, option: str, *, time_zone: str) -> datetime | None:
    """An ISO 8601 moment in UTC; without a zone it is on the newsletter's clock (`time_zone`)."""
    from newsletter.core import clock

    return clock.to_utc(value, time_zone=time_zone, field=option.lstrip("-"), label=option)


def _clean_subject(value: str | None) -> str | None:
    from newsletter.core.validation import clean_text

    if value is None:
        return None
    return clean_text("subject", value, max_length=300) or None


def _newsletters(session: Any) -> list[Any]:
    from newsletter.subscribers.newsletters import list_newsletters

    return list_newsletters(session)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
