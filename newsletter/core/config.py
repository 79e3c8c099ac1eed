"""Settings read from NEWSLETTER_* environment variables, with defaults that run anywhere."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import tempfile
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _checkout() -> Path | None:
    """The checkout the package runs from (its pyproject.toml and templates/ beside the
    package), or None when the package is installed from a wheel."""
    top = PACKAGE_DIR.parent
    is_checkout = (top / "pyproject.toml").is_file() and (top / "templates" / "email").is_dir()
    return top if is_checkout else None


CHECKOUT_DIR = _checkout()


def shipped_dir(name: Literal["templates", "seeds"]) -> Path:
    """Where the files that ship beside the code are: the templates, the seed articles.

    The project keeps them at the top level of the checkout; the wheel carries them inside
    the package (newsletter/templates, newsletter/seeds), where an installed service finds
    them. Locales and migrations live inside the package in both.
    """
    inside = PACKAGE_DIR / name
    if inside.is_dir() or CHECKOUT_DIR is None:
        return inside
    return CHECKOUT_DIR / name


TEMPLATES_DIR = shipped_dir("templates")
SEEDS_DIR = shipped_dir("seeds")

# Values that mean "somebody copied the example and never changed it".
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "please-change", "xxx"})
# A secret signs readers' links, keys the suppression list's hashes and opens the admin
# API: at least this many characters, with at least SECRET_MIN_DISTINCT different ones
# (what a random token has by far; `aaaa…` or `admin` has not). Eight, not more: 32 random
# hex digits (`openssl rand -hex 16`) have fewer than 12 different ones once in 60 draws,
# and fewer than 8 practically never.
SECRET_MIN_LENGTH = 32
SECRET_MIN_DISTINCT = 8
SECRETS = ("secret_key", "admin_token")

LANGUAGES = ("pt", "en", "zh")


class SettingsError(RuntimeError):
    """The configuration cannot be used as it is."""


def _bracketed(host: str) -> str:
    """An IPv6 address as a Host header carries it ([::1]); other names as they are."""
    host = host.strip("[]") if host.startswith("[") else host
    return f"[{host}]" if ":" in host else host


class Settings(BaseSettings):
    """Everything the service needs to know about where it runs."""

    model_config = SettingsConfigDict(env_prefix="NEWSLETTER_", extra="ignore")

    environment: str = Field(
        default="development",
        description="development, or anything else: production (which never generates "
        "secrets and refuses placeholders).",
    )
    var_dir: Path = Field(
        default_factory=lambda: (CHECKOUT_DIR or Path.cwd()) / "var",
        description="var/ of the checkout when running from one, else of the current folder.",
    )
    database_url: str = ""
    # Connections each process keeps open to PostgreSQL; the web process runs half this
    # many requests' blocking work at once (web.app.limit_threads), so that no request
    # pays for a connection opened and closed around it (a few milliseconds, more than a
    # signup's own work).
    database_pool_size: int = Field(default=20, ge=2, le=200)
    broker_url: str = ""
    smtp_url: str = Field(
        default="",
        description="smtp://user:pass@host:587 (STARTTLS when offered) or smtps://host:465; "
        "empty means the built-in sink on sink_host:sink_port.",
    )
    international_addresses: bool = Field(
        default=True,
        description="Take addresses with non-ASCII letters before the @-sign (joão@…), sent "
        "with SMTPUTF8; turn off when the relay does not offer SMTPUTF8, and signup and "
        "import refuse them in words instead. A non-ASCII domain alone always goes, as IDNA.",
    )
    # The Celery queue: one per installation sharing a broker (the tests take their own).
    queue: str = "newsletter"
    # Put before every Redis key the service uses (the broker's queues and bookkeeping, the
    # send and signup counts), so that installations, or test runs, can share one database.
    redis_key_prefix: str = ""
    sink_host: str = "127.0.0.1"
    sink_port: int = 8025
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = ""
    admin_token: str = ""
    # The admin dashboard: how long a sign-in lasts, and the pause after a wrong token
    # (doubled with each further wrong try from the same address, up to a minute).
    admin_session_hours: float = Field(default=12, gt=0, le=24 * 30)
    admin_signin_delay_seconds: float = Field(default=1.0, ge=0, le=60)
    # Sign-in attempts one client address may make in a window (counted in the database,
    # shared by every web process); over it, 429 until the window ends, right token or not.
    admin_signin_attempts: int = Field(default=10, ge=1, le=1000)
    admin_signin_window_seconds: int = Field(default=900, ge=1, le=24 * 3600)
    # Hosts (client addresses) that may read /metrics and /readyz's details without the token.
    metrics_allow_hosts: list[str] = Field(default_factory=list)
    # "text" (one line per event) or "json" (one object per line, for a log shipper).
    log_format: Literal["text", "json"] = "text"

    publisher_name: str = "Plataforma"
    from_address: str = "newsletter@localhost"
    mail_domain: str = Field(
        default="",
        description="Domain of Message-IDs, List-Id and the VERP bounce address; "
        "defaults to the domain of from_address.",
    )
    default_language: str = "en"
    default_time_zone: str = "Europe/Lisbon"
    # The publisher's postal address, in every email's footer (CAN-SPAM asks for one; a
    # production install refuses to start without it). One line: "Rua X 1, 1000-001 Lisboa".
    postal_address: str = Field(default="", max_length=300)
    # The seed list: where an editor's test sends go unless they name other addresses
    # (comma-separated: "editor@example.com, desk@example.com").
    test_recipients: str = Field(default="", max_length=4000)

    digest_max_articles: int = Field(default=10, ge=1, le=100)
    # The first digest of a newsletter covers this many hours back.
    digest_first_window_hours: int = Field(default=24, ge=1)

    dkim_key: str = Field(
        default="", description="PEM private key, or the path of a file holding one."
    )
    dkim_selector: str = ""
    dkim_domain: str = Field(default="", description="d= of the signature; mail_domain if empty.")

    batch_size: int = Field(default=500, ge=1, le=10_000)
    # Temporary failures are tried again after base, twice base, four times ... (capped, jittered).
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=900.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    rate_per_second: int = Field(default=0, ge=0, description="0: no limit.")
    rate_per_hour: int = Field(default=0, ge=0, description="0: no limit.")
    # Deliveries untouched this long lost their task and are queued again; above the
    # longest retry countdown, so that a retry waiting its turn is left alone.
    stale_after_seconds: int = Field(default=2400, ge=10)
    # On PostgreSQL, write delivery outcomes without waiting for the disk flush: about a
    # quarter faster; a database *crash* (not a restart) may then resend the last
    # fraction of a second's messages.
    delivery_async_commit: bool = False
    # The most deliveries claimed per statement, their marks written with the next
    # group's claim: fewer round trips and commits per message. A group holds what the
    # relay takes in about a tenth of a second (digests.batch.GROUP_SECONDS), so a slow
    # relay sends one at a time. A worker killed mid-group may send up to this many
    # messages twice (invariant 2's bound, per kill); 1 is one at a time.
    delivery_claim_group: int = Field(default=32, ge=1, le=100)
    # Far above a batch's run time, and above the longest retry countdown.
    broker_visibility_timeout: int = Field(default=3600, ge=10)
    # Each worker writes a heartbeat this often; one silent for worker_lost_seconds is
    # lost (its machine gone), and the sweeper gives what it held to the others.
    worker_heartbeat_seconds: float = Field(default=10.0, ge=0.5, le=300)
    worker_lost_seconds: float = Field(default=45.0, ge=2, le=3600)

    # Soft bounces: this many within the window, with no delivery in between, bounce the
    # reader (a hard bounce does it at once).
    soft_bounce_limit: int = Field(default=3, ge=1)
    soft_bounce_window_days: int = Field(default=14, ge=1)
    bounce_raw_days: int = Field(default=30, ge=1, description="Keep raw bounces this long.")
    bounce_imap_url: str = Field(
        default="", description="imaps://user:pass@host/INBOX polled for bounces by the beat."
    )
    # Mailbox providers' feedback loops (sender domains, e.g. ["fbl.yahoo.com"]) whose ARF
    # complaints by mail are acted on; any other mailed complaint is kept unverified.
    feedback_loop_sources: list[str] = Field(
        default_factory=list,
        description="Sender domains whose mailed ARF complaints unsubscribe (JSON list).",
    )
    bounce_host: str = "127.0.0.1"
    bounce_port: int = 2525

    # ESP webhooks: each provider's secret; an empty one refuses that provider's calls.
    ses_topic_arns: list[str] = Field(default_factory=list)
    mailgun_signing_key: str = ""
    postmark_webhook_user: str = ""
    postmark_webhook_password: str = ""
    sendgrid_public_key: str = ""

    send_goodbye: bool = Field(
        default=False,
        description="Confirm an unsubscribe made on the web page with one last email. Off by "
        "default: a reader who leaves gets no more mail, not even this.",
    )

    confirmation_interval_seconds: int = Field(
        default=600, description="A pending address gets at most one confirmation per interval."
    )
    confirm_token_max_age_seconds: int = 7 * 24 * 3600
    # How long the link to a reader's data, or to confirm its erasure, works once mailed.
    data_link_max_age_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    smtp_timeout_seconds: float = 30.0
    max_request_bytes: int = 64 * 1024
    max_api_request_bytes: int = 1024 * 1024

    # Signups an hour from one client address and for one email address (0: no limit);
    # over it, POST /subscribe answers 429 (newsletter.signup_limits).
    signup_limit_per_ip_per_hour: int = Field(default=20, ge=0)
    signup_limit_per_address_per_hour: int = Field(default=5, ge=0)
    # Confirmation emails a day to one mailbox, however its address is spelled (0: no limit).
    confirmations_per_mailbox_per_day: int = Field(default=3, ge=0)
    # The reverse proxies whose X-Forwarded-For names the client (addresses or networks,
    # comma-separated); none by default: the client is whoever connects.
    trusted_proxies: str = ""
    # The Host names the web app answers to (comma-separated; "*.example.com" for
    # subdomains, "*" for any); empty: the host of base_url, and localhost, 127.0.0.1 and
    # ::1 (for probes on the machine). Any other Host header is a 400: it would otherwise
    # be reflected in redirects and links.
    allowed_hosts: str = ""
    # /docs and /openapi.json: on in development, off in production unless set true.
    api_docs: bool | None = None

    # Analytics (README "Analytics and privacy"): each is off unless the publisher turns it
    # on. Clicks: each story link goes through a signed /r/ redirect that counts it, per
    # digest, story and language. Opens: a one-pixel image in each digest, counted the same
    # way (proxies and Apple's Mail Privacy Protection as machine opens).
    track_clicks: bool = Field(
        default=False, description="Count clicks on the stories of digests (a signed redirect)."
    )
    track_opens: bool = Field(default=False, description="Count opens with a one-pixel image.")
    # Per-reader records of those clicks and opens, for readers who have not turned them
    # off on their preferences page; without it, nothing links a click to a reader.
    track_readers: bool = Field(
        default=False,
        description="Record which reader clicked or opened (each reader may refuse).",
    )
    # Click and open records are deleted after this many days.
    analytics_days: int = Field(default=395, ge=1, le=3660)

    feeds: list[str] = Field(
        default_factory=list, description="RSS/Atom feeds polled on a beat tick (JSON list)."
    )
    feed_poll_minutes: int = Field(default=15, ge=1)
    # Feeds are fetched from public addresses on these ports only (a feed, or its redirect,
    # pointing at the service's own machine or network is refused): "80,443" or a JSON list.
    feed_allowed_ports: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [80, 443])
    feed_allow_private: bool = Field(
        default=False,
        description="Also fetch feeds from loopback and private networks (a trusted LAN).",
    )

    @field_validator("feed_allowed_ports", mode="before")
    @classmethod
    def _ports_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("feed_allowed_ports")
    @classmethod
    def _ports_in_range(cls, value: list[int]) -> list[int]:
        if not all(1 <= port <= 65535 for port in value):
            raise ValueError("ports are numbers from 1 to 65535")
        return value

    _generated_secrets: set[str] = PrivateAttr(default_factory=set)
    _base_url_given: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _fill_derived(self) -> Settings:
        self.var_dir = self.var_dir.resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.var_dir / 'newsletter.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.var_dir / 'broker.db'}"
        if not self.mail_domain:
            self.mail_domain = self.from_address.rpartition("@")[2] or "localhost"
        # Read before base_url is assigned below, which marks it as set.
        self._base_url_given = "base_url" in self.model_fields_set
        self.base_url = self.base_url.rstrip("/")
        return self

    @model_validator(mode="after")
    def _check_worker_clock(self) -> Settings:
        # Lost after a single missed heartbeat, a busy worker would be taken for dead.
        if self.worker_lost_seconds < 2 * self.worker_heartbeat_seconds:
            raise SettingsError(
                "NEWSLETTER_WORKER_LOST_SECONDS must be at least twice "
                "NEWSLETTER_WORKER_HEARTBEAT_SECONDS, or a worker could be taken for lost "
                "between two heartbeats"
            )
        return self

    @model_validator(mode="after")
    def _check_trusted_proxies(self) -> Settings:
        # uvicorn would take a mistyped entry as a name that never matches: refuse it.
        for entry in self.trusted_proxy_list:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise SettingsError(
                    f"NEWSLETTER_TRUSTED_PROXIES: {entry!r} is not an IP address or network"
                ) from None
        return self

    @property
    def trusted_proxy_list(self) -> list[str]:
        """NEWSLETTER_TRUSTED_PROXIES as a list of addresses and networks."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def allowed_host_list(self) -> list[str]:
        """NEWSLETTER_ALLOWED_HOSTS as a list, or the default: base_url's host and loopback.

        IPv6 addresses are written bracketed, as they appear in a Host header.
        """
        hosts = [h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()]
        if not hosts:
            hosts = [urlsplit(self.base_url).hostname or "", "localhost", "127.0.0.1", "::1"]
        return list(dict.fromkeys(_bracketed(host) for host in hosts if host))

    @property
    def api_docs_enabled(self) -> bool:
        """Whether /docs and /openapi.json are served: NEWSLETTER_API_DOCS, else development."""
        return self.api_docs if self.api_docs is not None else not self.is_production

    @property
    def is_production(self) -> bool:
        # Fail closed: a name we do not know (`prod`, `staging`, a typo) is production.
        return self.environment.strip().lower() != "development"

    @property
    def uses_sink(self) -> bool:
        """True when no relay is configured and mail goes to the built-in sink."""
        return not self.smtp_url

    @property
    def effective_smtp_url(self) -> str:
        return self.smtp_url or f"smtp://{self.sink_host}:{self.sink_port}"

    @property
    def smtp_relays(self) -> list[str]:
        """The relays to use in turn: NEWSLETTER_SMTP_URL may list several, comma-separated."""
        return [url.strip() for url in self.effective_smtp_url.split(",") if url.strip()]

    @property
    def outbox_dir(self) -> Path:
        return self.var_dir / "outbox"

    @property
    def uses_redis(self) -> bool:
        return urlsplit(self.broker_url).scheme in {"redis", "rediss"}

    @property
    def uses_sqlite(self) -> bool:
        """Whether the database or the broker (the embedded one) is a SQLite file."""
        # sqlite://, sqlite+pysqlite://; kombu's sqla+sqlite:// and sqlalchemy+sqlite://.
        return any(
            "sqlite" in urlsplit(url).scheme.split("+")
            for url in (self.database_url, self.broker_url)
        )

    @property
    def base_url_given(self) -> bool:
        """Whether NEWSLETTER_BASE_URL was set (else the development default is in use)."""
        return self._base_url_given

    @property
    def generated_secrets(self) -> frozenset[str]:
        """The secrets ensure_secrets generated into var/ just now (none when they were
        given or already there): `newsletter up` shows the admin token only then."""
        return frozenset(self._generated_secrets)

    def ensure_sender_identity(self) -> None:
        """The postal address every email carries: required in production (CAN-SPAM; the
        big senders refuse to mail without one), one clean line when given."""
        address = self.postal_address.strip()
        if any(unicodedata.category(c) in {"Cc", "Zl", "Zp"} for c in address):
            raise SettingsError(
                "NEWSLETTER_POSTAL_ADDRESS must be one line, without control characters"
            )
        if self.is_production and not address:
            raise SettingsError(
                "NEWSLETTER_POSTAL_ADDRESS must be set in production: every email must carry "
                "the publisher's postal address (CAN-SPAM)"
            )
        self.postal_address = address

    def ensure_base_url(self) -> None:
        """Every link of every email starts with base_url: in production it must be given
        (a default would mail readers links to 127.0.0.1), and be http(s) with a host."""
        parts = urlsplit(self.base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise SettingsError(
                f"NEWSLETTER_BASE_URL must be an http(s) address with a host, not {self.base_url!r}"
            )
        if self.is_production and not self._base_url_given:
            raise SettingsError(
                "NEWSLETTER_BASE_URL must be set in production: it begins every link in every "
                "email (https://news.example.com)"
            )

    def ensure_secrets(self) -> None:
        """Fill secret_key and admin_token, or raise SettingsError: never start on a weak one.

        In development an unset (or placeholder) secret is generated once into var/ and
        read from there after; production generates nothing. Either way a secret that is
        empty, short or plainly not random is refused, a file in var/ included.
        """
        for name in SECRETS:
            value: str = getattr(self, name)
            where, remedy = f"NEWSLETTER_{name.upper()}", ""
            if value.strip().lower() in PLACEHOLDER_SECRETS:
                if self.is_production:
                    raise SettingsError(f"{where} must be set to a real secret in production")
                value, generated = _generated_secret(self.var_dir / name)
                if generated:
                    self._generated_secrets.add(name)
                where, remedy = str(self.var_dir / name), ", or delete the file for a new one"
            problem = weak_secret(value)
            if problem:
                raise SettingsError(
                    f"{where} {problem}: use at least {SECRET_MIN_LENGTH} random characters "
                    f"(python -c 'import secrets; print(secrets.token_urlsafe(32))'){remedy}"
                )
            setattr(self, name, value)


def weak_secret(value: str) -> str | None:
    """What is wrong with a secret (None when nothing is): empty, short, or not random."""
    if not value.strip():
        return "is empty"
    if len(value) < SECRET_MIN_LENGTH:
        return f"is shorter than {SECRET_MIN_LENGTH} characters"
    if len(set(value)) < SECRET_MIN_DISTINCT or value.strip().lower() in PLACEHOLDER_SECRETS:
        return "is not random"
    return None


def _generated_secret(path: Path) -> tuple[str, bool]:
    """A secret kept in var/, created the first time (readable by its owner only); whether
    it was created just now.

    Created whole or not at all: written to a temporary file, then linked under its name,
    which fails if another process (web and worker start together) got there first; the
    loser reads the winner's. A reader never sees a half-written (or empty) file.
    """
    try:
        return path.read_text().strip(), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return path.read_text().strip(), False
    finally:
        os.unlink(temporary)
    return value, True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once; tests call get_settings.cache_clear()."""
    settings = Settings(**settings_from_files(os.environ))  # type: ignore[arg-type]
    keep_private(settings.var_dir)
    settings.ensure_secrets()
    settings.ensure_sender_identity()
    settings.ensure_base_url()
    return settings


def settings_from_files(environ: Mapping[str, str]) -> dict[str, str]:
    """NEWSLETTER_<NAME>_FILE: the text setting read from that file (container secrets,
    systemd credentials), without its final line break. Setting both is refused (which one
    is meant?), and so is a name that is no text setting.
    """
    found: dict[str, str] = {}
    for key, path in environ.items():
        if not (key.startswith("NEWSLETTER_") and key.endswith("_FILE")) or not path:
            continue
        name = key.removeprefix("NEWSLETTER_").removesuffix("_FILE").lower()
        field = Settings.model_fields.get(name)
        if field is None or field.annotation is not str:
            # A misspelt name would otherwise leave the setting at its default (a
            # production database URL falling back to SQLite in var/): refused.
            raise SettingsError(f"{key}: NEWSLETTER_{name.upper()} is no text setting")
        if f"NEWSLETTER_{name.upper()}" in environ:
            raise SettingsError(f"set NEWSLETTER_{name.upper()} or {key}, not both")
        try:
            found[name] = Path(path).read_text(encoding="utf-8").removesuffix("\n")
            found[name] = found[name].removesuffix("\r")  # written on Windows
        except OSError as exc:
            raise SettingsError(f"{key}: cannot read {path}: {exc.strerror}") from None
    return found


def keep_private(var_dir: Path) -> None:
    """Make what this process creates its owner's alone, and var/ too (umask 077, 0700).

    var/ holds the database, the broker's queue, the outbox, uploads, metrics and the
    secrets: readers' addresses and tokens that other accounts on the machine must not
    read. Every process reads its settings first, so this runs before any of it is made.
    """
    os.umask(0o077)
    var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # A var/ made before (or by hand) is narrowed too; one the service does not own (a
    # folder an administrator shares on purpose) is left as it is.
    if var_dir.stat().st_uid == os.getuid() and var_dir.stat().st_mode & 0o077:
        var_dir.chmod(0o700)
