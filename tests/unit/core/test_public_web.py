"""Which addresses and ports a URL an outsider chose may reach (the feed fetcher's rule;
fetching itself, redirects and DNS rebinding: tests/integration/test_feeds.py)."""

from __future__ import annotations

import httpx
import pytest

from newsletter.core.public_web import Reach, address_problem, url_problem


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("2002:7f00:1::", "loopback"),  # 6to4
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "non-public"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_addresses_that_are_not_the_public_web_are_refused(address: str, kind: str) -> None:
    problem = address_problem(address, Reach())
    assert f"a {kind} address" in problem
    assert address_problem(address, Reach(allow_private=True)) == ""


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_problem(address, Reach()) == ""


def test_only_the_allowed_ports_are_asked() -> None:
    assert url_problem(httpx.URL("https://feeds.example/a.rss"), Reach()) == ""
    assert url_problem(httpx.URL("http://feeds.example/a.rss"), Reach()) == ""
    assert "port 8080 is not allowed" in url_problem(
        httpx.URL("http://feeds.example:8080/a.rss"), Reach()
    )
    assert url_problem(httpx.URL("http://feeds.example:8080/"), Reach(frozenset({8080}))) == ""
    assert "http:// or https://" in url_problem(httpx.URL("ftp://feeds.example/"), Reach())
