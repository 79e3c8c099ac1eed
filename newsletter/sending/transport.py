"""SMTP transport: one session to a relay named by a URL, with failures sorted by kind."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from types import TracebackType
from urllib.parse import unquote, urlsplit


class DeliveryError(Exception):
    """A message was not accepted; `permanent` says whether trying again can help, and
    `bounce` whether the reader's address is to blame (a permanent refusal of it is)."""

    def __init__(
        self, message: str, *, code: int | None = None, permanent: bool, bounce: bool = True
    ) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent
        self.bounce = permanent and bounce


# Said when the relay cannot carry a message to a mailbox name that is not ASCII.
NO_SMTPUTF8 = (
    "not sent: the address has non-ASCII letters before the @-sign, which needs SMTPUTF8, "
    "and the relay {host} does not offer it (set NEWSLETTER_INTERNATIONAL_ADDRESSES=false "
    "to refuse such addresses at signup, or use a relay that offers SMTPUTF8)"
)


class SMTPTransport:
    """An SMTP session to the relay of `url`, opened on enter and closed on exit.

    smtp://user:pass@host:587 upgrades with STARTTLS when the relay offers it (and insists
    on it when credentials are given); smtps://host:465 speaks TLS from the first byte.
    """

    def __init__(self, url: str, *, timeout: float = 30.0, local_hostname: str | None = None):
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError(f"An SMTP URL looks like smtp://user:pass@host:587, not {url!r}")
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.implicit_tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> SMTPTransport:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        try:
            if self.implicit_tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    timeout=self.timeout,
                    local_hostname=self.local_hostname,
                    context=ssl.create_default_context(),
                )
            else:
                smtp = smtplib.SMTP(
                    self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname
                )
            smtp.ehlo()
            if not self.implicit_tls and smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            elif not self.implicit_tls and self.username:
                raise DeliveryError(
                    f"{self.host} does not offer STARTTLS; refusing to send the password in clear",
                    permanent=True,
                )
            if self.username:
                smtp.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(_reply_text(exc), code=exc.smtp_code, permanent=True) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(
                f"cannot reach {self.host}:{self.port}: {exc}", permanent=False
            ) from exc
        self._smtp = smtp

    def close(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (OSError, smtplib.SMTPException):
            self._smtp.close()
        self._smtp = None

    def send(
        self, *, envelope_from: str, recipient: str, data: bytes, wire_ready: bool = False
    ) -> str:
        """Send one message; the server's reply on success, DeliveryError otherwise.

        `wire_ready`: the data's lines all end in CRLF and none starts with a dot
        (newsletter.email.render.OutgoingMessage), so it goes into DATA as it is.
        """
        if self._smtp is None:
            raise RuntimeError("the SMTP session is not open")
        # A non-ASCII mailbox name goes raw in RCPT TO and in To: (newsletter.email.render
        # .wire_address); only a relay offering SMTPUTF8 may be given either. Without it
        # the message is not sent at all: no retry makes the relay learn it, and mangling
        # the address would deliver it nowhere. It is no bounce either: the address is good.
        options = ["SMTPUTF8"] if not recipient.isascii() else []
        if options and not self._smtp.has_extn("smtputf8"):
            raise DeliveryError(NO_SMTPUTF8.format(host=self.host), permanent=True, bounce=False)
        try:
            if self._smtp.has_extn("pipelining") and not options:
                wire = data if wire_ready and data.endswith(b"\r\n") else _dot_stuffed(data)
                return self._send_pipelined(self._smtp, envelope_from, recipient, wire)
            refused = self._smtp.sendmail(envelope_from, [recipient], data, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = exc.recipients[recipient]
            raise DeliveryError(
                f"{code} {_decode(reply)}", code=code, permanent=code >= 500
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                _reply_text(exc), code=exc.smtp_code, permanent=exc.smtp_code >= 500
            ) from exc
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            self._smtp = None
            raise DeliveryError(f"connection lost: {exc}", permanent=False) from exc
        if refused:
            code, reply = refused[recipient]
            raise DeliveryError(f"{code} {_decode(reply)}", code=code, permanent=code >= 500)
        return "250 accepted"

    def _send_pipelined(
        self, smtp: smtplib.SMTP, envelope_from: str, recipient: str, wire: bytes
    ) -> str:
        """MAIL, RCPT and DATA in one write and their three replies read together (RFC 2920);
        `wire` is the message dot-stuffed, its last line ended.

        Two round trips a message instead of smtplib's four; the relay's answers are
        judged exactly as sendmail would judge them.
        """
        smtp.send(f"MAIL FROM:<{envelope_from}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
        mail, rcpt, ready = smtp.getreply(), smtp.getreply(), smtp.getreply()
        if ready[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
            # A server that said yes to DATA anyway gets an empty message it must refuse.
            smtp.send(b".\r\n")
            smtp.getreply()
        for code, reply in (mail, rcpt):
            if code not in (250, 251):
                self._reset(smtp)
                raise DeliveryError(f"{code} {_decode(reply)}", code=code, permanent=code >= 500)
        if ready[0] != 354:
            self._reset(smtp)
            code = ready[0]
            raise DeliveryError(f"{code} {_decode(ready[1])}", code=code, permanent=code >= 500)
        smtp.send(wire + b".\r\n")
        code, reply = smtp.getreply()
        if code != 250:
            raise DeliveryError(f"{code} {_decode(reply)}", code=code, permanent=code >= 500)
        return f"{code} {_decode(reply)}"

    @staticmethod
    def _reset(smtp: smtplib.SMTP) -> None:
        with contextlib.suppress(smtplib.SMTPServerDisconnected):
            smtp.rset()


def _dot_stuffed(data: bytes) -> bytes:
    """Data ready for the DATA phase: CRLF line ends, leading dots doubled, a final CRLF.

    The replacements run in C; smtplib's regular expressions cost far more per message.
    """
    if data.count(b"\n") != data.count(b"\r\n"):
        data = smtplib.quotedata(data.decode("utf-8", "surrogateescape")).encode(
            "utf-8", "surrogateescape"
        )
        return data if data.endswith(b"\r\n") else data + b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _reply_text(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_decode(exc.smtp_error)}"


def _decode(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
