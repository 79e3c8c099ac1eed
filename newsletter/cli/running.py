"""What `newsletter up` and `newsletter web` check before they serve: one service per var/
folder, free ports, and links that name the address actually served in development."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from typing import IO

import click

from newsletter.core.config import Settings, get_settings

LOCK_NAME = "up.lock"


class CommandError(click.ClickException):
    """An error the person at the terminal can act on: one line on stderr, exit status 1."""


def follow_served_address(host: str, port: int) -> Settings:
    """In development, with no NEWSLETTER_BASE_URL, every link (emails included, written by
    the worker this starts) names the address served here, not the default :8000."""
    settings = get_settings()
    if settings.base_url_given or settings.is_production:
        return settings
    shown = "127.0.0.1" if host in {"", "0.0.0.0", "::"} else host
    shown = f"[{shown}]" if ":" in shown else shown
    os.environ["NEWSLETTER_BASE_URL"] = f"http://{shown}:{port}"
    get_settings.cache_clear()
    return get_settings()


def hold_var_folder(settings: Settings) -> IO[str]:
    """One `newsletter up` per var/ folder: a second would start a second beat and worker
    on the same database. Held (an flock) until this process ends; returned to keep open."""
    path = settings.var_dir / LOCK_NAME
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise CommandError(
            f"another `newsletter up` (pid {pid}) already runs on {settings.var_dir}; "
            "stop it first, or give this one its own NEWSLETTER_VAR_DIR"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def check_ports_free(ports: list[tuple[str, str, int, str]]) -> None:
    """Each (what, host, port, how to change it) must be free to listen on, or one line says
    which is taken — before any process starts, rather than after half of them did."""
    for what, host, port, remedy in ports:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                raise CommandError(
                    f"port {port} on {host} ({what}) is already in use: stop what listens "
                    f"there, or {remedy}"
                ) from None
