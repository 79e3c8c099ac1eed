"""Bounces through two real doors: a Dovecot IMAP mailbox, and a genuine DSN from Postfix.

Each test runs its own instance of the server (its own configuration, ports and spool in a
temporary directory), never the system's. When the software is missing the test skips on
a laptop and fails in CI (NEWSLETTER_TEST_REQUIRE_SERVICES=1); once it is present, a door
that does not work is a failure, never a skip.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.bounces import policy as bounces
from newsletter.bounces.doors.mailbox import poll_imap
from newsletter.bounces.doors.smtp import start_receiver
from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import (
    BounceEvent,
    Delivery,
    DeliveryStatus,
    SubscriberStatus,
)
from newsletter.core.tokens import make_verp_token
from newsletter.digests.batch import BatchOutcome
from newsletter.subscribers import store as subscribers
from newsletter.subscribers import suppressions
from newsletter.tasks import jobs as tasks
from tests.conftest import REQUIRE_SERVICES, ROOT, free_port
from tests.factories import add_fresh_story, dispatched_daily, send_page
from tests.factories import add_reader as make_reader
from tests.factories import sent_delivery as make_delivery

CORPUS = ROOT / "tests" / "data" / "bounces"
FIXED_TOKEN = "s7d42-0123456789abcdef0123"  # the VERP token written into the corpus files
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def software_missing(what: str) -> None:
    """Missing server software fails the run in CI and skips the test elsewhere."""
    message = f"{what}: not installed here"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}, and NEWSLETTER_TEST_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


def find_program(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return shutil.which(name, path=path)


def wait_for_port(port: int, *, alive: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path.name} was not written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def make_temp_dir(prefix: str) -> Path:
    """A temp dir the servers' unprivileged users can traverse (mkdtemp makes it 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# --- the reader, a sent digest, and the corpus ---------------------------------------


def add_reader(email: str) -> int:
    return make_reader(email, name="Leitora")


def sent_delivery(subscriber_id: int) -> int:
    return make_delivery(subscriber_id)


def corpus(name: str, *, subscriber_id: int, delivery_id: int | None = None) -> bytes:
    """A sample from the corpus, its VERP token made valid for this reader and delivery."""
    raw = (CORPUS / name).read_bytes()
    assert FIXED_TOKEN.encode() in raw, f"{name} carries no VERP token to replace"
    token = make_verp_token(get_settings().secret_key, subscriber_id, delivery_id)
    return raw.replace(FIXED_TOKEN.encode(), token.encode())


@dataclass(frozen=True)
class ReaderState:
    status: str
    suppressed: bool


def reader_state(subscriber_id: int) -> ReaderState:
    with db.session_scope() as session:
        subscriber = subscribers.get_subscriber(session, subscriber_id)
        return ReaderState(subscriber.status, suppressions.is_listed(session, subscriber.email_key))


def bounce_events() -> list[BounceEvent]:
    with db.session_scope() as session:
        found = list(session.scalars(select(BounceEvent).order_by(BounceEvent.id)))
        session.expunge_all()
        return found


def delivery_status(delivery_id: int) -> str:
    with db.session_scope() as session:
        found = session.get(Delivery, delivery_id)
        assert found is not None
        return found.status


# --- Dovecot ------------------------------------------------------------------------


@dataclass
class Dovecot:
    port: int
    user: str
    password: str
    log: Path

    @property
    def url(self) -> str:
        return f"imap://{self.user}:{self.password}@127.0.0.1:{self.port}/INBOX"

    def connect(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(self.user, self.password)
        return client


@pytest.fixture(scope="session")
def dovecot_program() -> tuple[str, str]:
    """(path, version) of Debian's dovecot, with its IMAP server."""
    program = find_program("dovecot")
    if program is None:
        software_missing("Dovecot (Debian package dovecot-imapd)")
    assert program is not None
    version = subprocess.run(
        [program, "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout.split()[0]
    return program, version


def dovecot_config(directory: Path, *, version: str, port: int) -> str:
    """A configuration for one passwd-file user with a Maildir, all under `directory`."""
    if os.geteuid() == 0:  # the users Debian's package made; mail belongs to nobody
        internal, login, mail_user = "dovecot", "dovenull", "nobody"
    else:  # unprivileged: every process of the instance runs as whoever runs the tests
        internal = login = mail_user = pwd.getpwuid(os.geteuid()).pw_name
    internal_group = grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name
    mail_group = grp.getgrgid(pwd.getpwnam(mail_user).pw_gid).gr_name
    common = f"""\
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
instance_name = newsletter-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
mail_uid = {mail_user}
mail_gid = {mail_group}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""
    if version.startswith("2.3"):
        return f"""\
{common}
disable_plaintext_auth = no
auth_failure_delay = 0
mail_location = maildir:{directory}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {directory}/users
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={directory}/mail/%u
}}
"""
    # Dovecot 2.4 (Debian 13) renamed most of these; its file must start with the version.
    return f"""\
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
{common}
auth_allow_cleartext = yes
mail_driver = maildir
mail_home = {directory}/mail/%{{user}}
mail_path = ~
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb passwd-file {{
  default_password_scheme = PLAIN
  passwd_file_path = {directory}/users
}}
userdb static {{
  fields {{
    uid = {mail_user}
    gid = {mail_group}
    home = {directory}/mail/%{{user}}
  }}
}}
"""


@pytest.fixture
def dovecot(dovecot_program: tuple[str, str]) -> Iterator[Dovecot]:
    """Our own Dovecot in the foreground, on a free loopback port; stopped and removed after."""
    program, version = dovecot_program
    directory = make_temp_dir("newsletter-dovecot-")
    port = free_port()
    user, password = "bounces", secrets.token_hex(12)
    # Dovecot drops to its own users: what is made for it must be readable by them, whatever
    # umask the newsletter's settings gave this process (077, see core.config.keep_private).
    previous_umask = os.umask(0o022)
    (directory / "users").write_text(f"{user}:{{PLAIN}}{password}\n")
    (directory / "mail").mkdir()
    if os.geteuid() == 0:
        shutil.chown(directory / "mail", "nobody")
    config = directory / "dovecot.conf"
    config.write_text(dovecot_config(directory, version=version, port=port))
    log = directory / "dovecot.log"
    output = directory / "stderr.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        with output.open("wb") as err:
            process = subprocess.Popen(
                [program, "-F", "-c", str(config)],
                stdout=err,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running = process
        if not wait_for_port(port, alive=lambda: running.poll() is None):
            raise AssertionError(
                f"Dovecot {version} did not start on port {port}:\n"
                f"{tail(output)}\n{tail(log)}\nconfiguration:\n{config.read_text()}"
            )
        yield Dovecot(port, user, password, log)
    finally:
        if process is not None:
            stop_process_group(process)
        shutil.rmtree(directory, ignore_errors=True)
        os.umask(previous_umask)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server we started in its own session and to its children; then SIGKILL.

    Signalled only while the leader is not reaped, so that its group id is still ours.
    """
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def append(server: Dovecot, *messages: bytes) -> None:
    client = server.connect()
    try:
        for raw in messages:
            status, detail = client.append("INBOX", None, None, raw)
            assert status == "OK", detail
    finally:
        client.logout()


def inbox(server: Dovecot) -> tuple[int, int]:
    """(messages, unseen) in the INBOX, as the server counts them."""
    client = server.connect()
    try:
        status, detail = client.status("INBOX", "(MESSAGES UNSEEN)")
        assert status == "OK", detail
        counts = re.search(rb"MESSAGES (\d+) UNSEEN (\d+)", detail[0] or b"")
        assert counts, detail
        return int(counts.group(1)), int(counts.group(2))
    finally:
        client.logout()


def test_a_bounce_mailbox_on_dovecot_is_polled_over_imap(clean_db: str, dovecot: Dovecot) -> None:
    bounced = add_reader("leitora@example.com")
    away = add_reader("ferias@example.com")
    bounced_delivery = sent_delivery(bounced)
    append(
        dovecot,
        corpus("postfix_user_unknown.eml", subscriber_id=bounced, delivery_id=bounced_delivery),
        corpus("out_of_office.eml", subscriber_id=away, delivery_id=sent_delivery(away)),
    )
    assert inbox(dovecot) == (2, 2)

    outcomes: list[bounces.BounceOutcome] = []

    def hand(raw: bytes) -> None:
        with db.session_scope() as session:
            outcomes.append(bounces.process_message(session, raw, settings=get_settings()))

    assert poll_imap(dovecot.url, hand) == 2
    assert sorted((o.kind, o.action) for o in outcomes) == [
        ("hard", "suppressed"),
        ("none", "ignored"),
    ]
    assert reader_state(bounced) == ReaderState(SubscriberStatus.BOUNCED, suppressed=True)
    assert delivery_status(bounced_delivery) == DeliveryStatus.BOUNCED
    assert reader_state(away) == ReaderState(SubscriberStatus.ACTIVE, suppressed=False)
    (event,) = bounce_events()
    assert (event.subscriber_id, event.delivery_id, event.source) == (
        bounced,
        bounced_delivery,
        "mail",
    )

    # What was handed on is gone from the mailbox: the next poll finds nothing to hand.
    assert inbox(dovecot) == (0, 0)
    outcomes.clear()
    assert poll_imap(dovecot.url, hand) == 0 and outcomes == []
    assert len(bounce_events()) == 1


def test_a_wrong_imap_password_is_an_error_not_an_empty_mailbox(dovecot: Dovecot) -> None:
    wrong = dovecot.url.replace(dovecot.password, "not-the-password")
    with pytest.raises(imaplib.IMAP4.error):
        poll_imap(wrong, lambda raw: None)


def test_a_message_the_hand_could_not_take_is_handed_again_next_time(dovecot: Dovecot) -> None:
    append(dovecot, b"From: MAILER-DAEMON@mx.example.com\r\nSubject: bounce\r\n\r\nx\r\n")

    def queue_down(raw: bytes) -> None:
        raise ConnectionError("the broker does not answer")

    with pytest.raises(ConnectionError):
        poll_imap(dovecot.url, queue_down)
    handed: list[bytes] = []
    assert poll_imap(dovecot.url, handed.append) == 1
    assert b"Subject: bounce" in handed[0]
    assert inbox(dovecot) == (0, 0)


# --- Postfix ------------------------------------------------------------------------

# The reader's mail domain, which our own Postfix cannot deliver to: accepted at RCPT
# time, then failed by the error(8) agent, so that Postfix itself writes the DSN. (A
# `.test` domain would do for Postfix, but the signup form refuses reserved names.)
DEAD_END_DOMAIN = "deadend.example.com"
DEAD_END_READER = f"someone@{DEAD_END_DOMAIN}"

POSTFIX_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup     unix  n - n 60 1 pickup
cleanup    unix  n - n - 0 cleanup
qmgr       unix  n - n 300 1 qmgr
rewrite    unix  - - n - - trivial-rewrite
bounce     unix  - - n - 0 bounce
defer      unix  - - n - 0 bounce
trace      unix  - - n - 0 bounce
verify     unix  - - n - 1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n - - proxymap
proxywrite unix  - - n - 1 proxymap
smtp       unix  - - n - - smtp
relay      unix  - - n - - smtp
showq      unix  n - n - - showq
error      unix  - - n - - error
retry      unix  - - n - - error
discard    unix  - - n - - discard
local      unix  - n n - - local
anvil      unix  - - n - 1 anvil
scache     unix  - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


@dataclass
class Postfix:
    directory: Path
    port: int  # its smtpd, where we send the digest
    receiver_port: int  # our inbound receiver, where it sends the DSN
    handed: list[list[str]] = field(default_factory=list)  # envelope recipients received

    @property
    def config(self) -> Path:
        return self.directory / "conf"

    @property
    def maillog(self) -> Path:
        return self.directory / "maillog"

    def postqueue(self, *args: str) -> str:
        result = subprocess.run(
            [postfix_program("postqueue"), "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return result.stdout + result.stderr


def postfix_program(name: str) -> str:
    program = find_program(name)
    assert program is not None, f"{name} is not installed"
    return program


@pytest.fixture(scope="session")
def postfix_programs() -> None:
    """Debian's postfix, which must run as root to start its own master."""
    if not all(find_program(name) for name in ("postfix", "postconf", "postqueue")):
        software_missing("Postfix (Debian package postfix)")
    if os.geteuid() != 0:
        software_missing("Postfix run as root (its master(8) starts only as root)")


def postfix_main_cf(directory: Path) -> str:
    return f"""\
compatibility_level = 3.6
config_directory = {directory}/conf
queue_directory = {directory}/queue
data_directory = {directory}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = {directory}
maillog_file = {directory}/maillog
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.localhost.test
mydomain = localhost.test
myorigin = localhost.test
mydestination = localhost.test
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
smtputf8_enable = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
smtp_host_lookup = native
disable_dns_lookups = yes
# Otherwise smtpd refuses a recipient routed to error(8) at RCPT time: a synchronous 5xx
# to the sender, not the DSN this door is about.
smtpd_reject_unlisted_recipient = no
# The reader's domain fails for good; our bounce domain goes to our inbound receiver.
# (texthash: the file is read as it is, no postmap.)
transport_maps = texthash:{directory}/conf/transport
bounce_queue_lifetime = 1h
maximal_queue_lifetime = 1h
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 10s
"""


@pytest.fixture
def postfix(postfix_programs: None) -> Iterator[Postfix]:
    """Our own Postfix: its config, queue and log in a temp dir; smtpd on a free port."""
    directory = make_temp_dir("newsletter-postfix-")
    instance = Postfix(directory, port=free_port(), receiver_port=free_port())
    config = instance.config
    mail_domain = get_settings().mail_domain
    # Postfix's daemons run as postfix: as for Dovecot, its files must be readable by them.
    previous_umask = os.umask(0o022)
    config.mkdir()
    (directory / "queue").mkdir()
    (directory / "data").mkdir()
    shutil.chown(directory / "data", "postfix")
    (config / "main.cf").write_text(postfix_main_cf(directory))
    (config / "master.cf").write_text(POSTFIX_MASTER_CF.format(port=instance.port))
    (config / "transport").write_text(
        f"{DEAD_END_DOMAIN} error:5.1.1 mailbox unavailable\n"
        f"{mail_domain} smtp:[127.0.0.1]:{instance.receiver_port}\n"
    )
    postfix = postfix_program("postfix")
    started = False
    try:
        result = subprocess.run(
            [postfix, "-c", str(config), "start"], capture_output=True, text=True, timeout=60
        )
        started = result.returncode == 0
        if not started or not wait_for_port(instance.port, alive=lambda: True):
            raise AssertionError(
                f"our Postfix did not start (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{tail(instance.maillog)}"
            )
        yield instance
    finally:
        stop_postfix(postfix, instance, started=started)
        shutil.rmtree(directory, ignore_errors=True)
        os.umask(previous_umask)


def stop_postfix(postfix: str, instance: Postfix, *, started: bool) -> None:
    """`postfix stop` waits for its master (and forces it after 5 s); then make sure."""
    pid_file = instance.directory / "queue" / "pid" / "master.pid"
    master_pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
    if started:
        subprocess.run(
            [postfix, "-c", str(instance.config), "stop"], capture_output=True, timeout=60
        )
    if master_pid is None:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and is_postfix_master(master_pid):
        time.sleep(0.1)
    if is_postfix_master(master_pid):  # still there: its process group goes at once
        os.killpg(master_pid, signal.SIGKILL)


def is_postfix_master(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "master"
    except OSError:
        return False


@pytest.fixture
def world_with_postfix(postfix: Postfix, clean_db: str) -> Iterator[Postfix]:
    """Postfix, and our inbound receiver behind it, running the inbound task on what it takes.

    The task runs in the receiver's thread rather than through the broker: the Celery hop
    is the receiver tests' concern (tests/test_bounces.py), and a worker shared through
    Redis would make this door's result depend on whatever else runs on the machine.
    """

    def hand(raw: str, recipients: list[str]) -> None:
        postfix.handed.append(recipients)
        tasks.process_inbound(raw, recipients)

    controller = start_receiver(get_settings(), hand, host="127.0.0.1", port=postfix.receiver_port)
    try:
        yield postfix
    finally:
        controller.stop()


def send_digest_through(relay: str) -> tuple[int, int, BatchOutcome]:
    """The project's own path: a digest of a fresh article, dispatched and sent in a batch.

    Returns (digest id, delivery id, the batch's outcome).
    """
    add_fresh_story()
    digest_id, page = dispatched_daily()
    assert len(page.queued) == 1, page
    outcome = send_page(digest_id, page, claimant="test-postfix-door", relay=relay)
    return digest_id, page.queued[0], outcome


def test_a_digest_postfix_cannot_deliver_comes_back_as_a_dsn_and_bounces_the_reader(
    world_with_postfix: Postfix,
) -> None:
    postfix = world_with_postfix
    reader = add_reader(DEAD_END_READER)

    _, delivery_id, outcome = send_digest_through(f"smtp://127.0.0.1:{postfix.port}")
    # Postfix took the message: the failure comes later, by mail, as a DSN.
    assert (outcome.sent, outcome.bounced, outcome.failed) == (1, 0, 0), outcome
    assert delivery_status(delivery_id) == DeliveryStatus.SENT
    verp = f"bounces+{make_verp_token(get_settings().secret_key, reader, delivery_id)}@"

    deadline = time.monotonic() + 60
    next_flush = time.monotonic() + 5
    while reader_state(reader).status != SubscriberStatus.BOUNCED:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no hard bounce within 60 s; the receiver got {postfix.handed}\n"
                f"queue:\n{postfix.postqueue('-p')}\nmaillog:\n{tail(postfix.maillog)}"
            )
        if time.monotonic() > next_flush:  # a DSN deferred by a hiccup goes again now
            postfix.postqueue("-f")
            next_flush = time.monotonic() + 5
        time.sleep(0.2)

    # The DSN came to the reader's VERP address of that very delivery, from Postfix.
    assert [r for r in postfix.handed if any(a.startswith(verp) for a in r)], postfix.handed
    assert reader_state(reader) == ReaderState(SubscriberStatus.BOUNCED, suppressed=True)
    assert delivery_status(delivery_id) == DeliveryStatus.BOUNCED
    (event,) = bounce_events()
    assert (event.kind, event.subscriber_id, event.delivery_id) == ("hard", reader, delivery_id)
    assert event.status == "5.1.1"
    assert "Reporting-MTA: dns; mx.localhost.test" in (event.raw or "")
    assert f"Final-Recipient: rfc822; {DEAD_END_READER}" in (event.raw or "")
    log = postfix.maillog.read_text(errors="replace")
    assert f"to=<{DEAD_END_READER}>" in log and "status=bounced" in log
    assert "sender non-delivery notification" in log
