"""Signup limits: one mailbox whatever its spelling, one IPv6 client whatever its address."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from newsletter.core.config import Settings, get_settings
from newsletter.core.validation import InvalidInput
from newsletter.subscribers import signup_limits
from newsletter.subscribers.signup_limits import check_signup, mailbox, may_send_confirmation


@pytest.fixture
def settings() -> Iterator[Settings]:
    """Counted in this process (no Redis), from nothing, with every limit off."""
    signup_limits._local.clear()
    yield get_settings().model_copy(
        update={
            "broker_url": "sqla+sqlite:///nowhere.db",
            "signup_limit_per_ip_per_hour": 0,
            "signup_limit_per_address_per_hour": 0,
            "confirmations_per_mailbox_per_day": 0,
        }
    )
    signup_limits._local.clear()


@pytest.mark.parametrize(
    ("address", "inbox"),
    [
        ("alice@example.com", "alice@example.com"),
        ("Alice+news@Example.COM", "alice@example.com"),
        ("alice+a+b@example.com", "alice@example.com"),
        (" ALICE+x@example.com ", "alice@example.com"),
        ("+tagonly@example.com", "+tagonly@example.com"),
        ("A.L.Ice+x@GoogleMail.com", "alice@gmail.com"),
        ("a.lice@example.com", "a.lice@example.com"),  # dots matter elsewhere
        ("josé+x@exemplo.pt", "josé@exemplo.pt"),
    ],
)
def test_the_mailbox_an_address_delivers_to(address: str, inbox: str) -> None:
    assert mailbox(address) == inbox


def test_an_invalid_address_has_no_mailbox() -> None:
    with pytest.raises(InvalidInput):
        mailbox("alice+@")


def test_plus_tags_and_case_share_one_hourly_allowance(settings: Settings) -> None:
    limited = settings.model_copy(update={"signup_limit_per_address_per_hour": 2})
    outcomes = [
        check_signup(limited, ip=None, email=email)
        for email in ("alice@example.com", "alice+1@example.com", "ALICE+2@example.com")
    ]
    assert outcomes[:2] == [None, None]
    assert outcomes[2] is not None and outcomes[2].by == "address"
    assert check_signup(limited, ip=None, email="bob+1@example.com") is None


def test_one_ipv6_client_is_counted_by_its_slash_64(settings: Settings) -> None:
    limited = settings.model_copy(update={"signup_limit_per_ip_per_hour": 2})

    def signup(ip: str) -> bool:
        return check_signup(limited, ip=ip, email="x@example.com") is None

    assert [signup(f"2001:db8:0:1::{n:x}") for n in range(1, 4)] == [True, True, False]
    assert signup("2001:db8:0:2::1")  # another /64, another client
    # An IPv4 client written as a mapped IPv6 address is that IPv4 client.
    assert [signup("198.51.100.9"), signup("::ffff:198.51.100.9")] == [True, True]
    assert not signup("198.51.100.9")


def test_a_mailbox_gets_its_daily_confirmations_whatever_the_spelling(settings: Settings) -> None:
    limited = settings.model_copy(update={"confirmations_per_mailbox_per_day": 3})
    spellings = ["alice@example.com", "alice+1@example.com", "Alice+2@example.com"]
    assert all(may_send_confirmation(limited, email=email) for email in spellings)
    assert not may_send_confirmation(limited, email="alice+3@example.com")
    assert may_send_confirmation(limited, email="bob@example.com")
    # No limit: nothing is counted.
    assert all(may_send_confirmation(settings, email="carol@example.com") for _ in range(10))
