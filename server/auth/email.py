"""Sending e-mail: the console provider (embedded default) and an SMTP one."""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass
from email.message import EmailMessage as MimeMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Protocol

import aiosmtplib

from config.errors import InvalidRequestError, UnavailableError
from config.settings import EmailSettings

log = logging.getLogger("parley.email")

_TIMEOUT_SECONDS = 10
# RFC 5321 section 4.5.3.1.3: a path is at most 256 octets including the angle brackets.
_MAX_ADDRESS_LENGTH = 254
# One local part, one "@", one domain, and none of RFC 5322's specials (section 3.2.3)
# other than the dots of a dot-atom, nor whitespace or control characters: the value can
# only ever name one recipient in the To header. Quoted local parts and domain literals,
# legal but vanishingly rare, are refused.
_ATOM_CHARS = r'[^@()<>\[\]:;\\,"\s\x00-\x1f\x7f]+'
_ADDRESS_SHAPE = re.compile(_ATOM_CHARS + "@" + _ATOM_CHARS)
_LINE_BREAKS = frozenset("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")


@dataclass(frozen=True)
class EmailMessage:
    """One plain-text message to one recipient; links appear in the text."""

    to: str
    subject: str
    text: str


class EmailSender(Protocol):
    """Delivers an ``EmailMessage``; raises ``UnavailableError`` when it cannot."""

    async def send(self, message: EmailMessage) -> None: ...

    async def close(self) -> None: ...


def _has_line_break(value: str) -> bool:
    # CR and LF are what header injection needs; the rest are the other characters
    # str.splitlines() breaks on, which the email package refuses in headers too.
    return not _LINE_BREAKS.isdisjoint(value)


def validate_message(message: EmailMessage) -> None:
    """Refuse a recipient or subject that could inject headers (CR/LF) or extra recipients."""
    to = message.to
    if _has_line_break(to):
        raise InvalidRequestError("e-mail address contains a line break", code="invalid_email")
    if len(to) > _MAX_ADDRESS_LENGTH or not _ADDRESS_SHAPE.fullmatch(to):
        raise InvalidRequestError("not an e-mail address", code="invalid_email")
    if _has_line_break(message.subject):
        raise InvalidRequestError("e-mail subject contains a line break", code="invalid_email")


class ConsoleEmailSender:
    """Writes each message to the log instead of sending it (development only)."""

    async def send(self, message: EmailMessage) -> None:
        validate_message(message)
        # The body goes in the message too: the text log format shows no extras,
        # and the link in it is the point of reading the log.
        log.warning(
            "email to %s: %s\n%s",
            message.to,
            message.subject,
            message.text,
            extra={
                "email_to": message.to,
                "email_subject": message.subject,
                "email_text": message.text,
            },
        )

    async def close(self) -> None:
        return None


def starttls_mode(settings: EmailSettings) -> bool | None:
    """The ``start_tls`` argument for aiosmtplib: ``None`` (upgrade when offered) or ``False``.

    STARTTLS (RFC 3207) is used whenever the server offers it, and the server's
    certificate is then verified, except on port 25 with no credentials: that is
    a relay on this host or network (a local Postfix, a smarthost by IP) whose
    certificate rarely matches the name we dial, there is no password to protect,
    and the relay applies its own TLS policy onward. A server that offers no
    STARTTLS gets plain SMTP on any port.
    """
    has_credentials = bool(settings.smtp_username and settings.smtp_password)
    if settings.smtp_port == 25 and not has_credentials:
        return False
    return None


class SmtpEmailSender:
    """Submits each message over SMTP with aiosmtplib, one connection per message."""

    def __init__(self, settings: EmailSettings, *, tls_context: ssl.SSLContext | None = None):
        self._envelope_from = parseaddr(settings.sender)[1]
        if "@" not in self._envelope_from or _has_line_break(settings.sender):
            raise ValueError("PARLEY_EMAIL_SENDER must be one e-mail address, on one line")
        self._settings = settings
        # Trust anchors for STARTTLS; None means the system's CA store.
        self._tls_context = tls_context
        # make_msgid() without a domain calls socket.getfqdn(), which blocks on DNS.
        self._msgid_domain = self._envelope_from.rpartition("@")[2]

    def _build(self, message: EmailMessage) -> MimeMessage:
        mime = MimeMessage()
        mime["From"] = self._settings.sender
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime["Date"] = formatdate(usegmt=True)
        mime["Message-ID"] = make_msgid(domain=self._msgid_domain)
        mime.set_content(message.text)
        return mime

    async def send(self, message: EmailMessage) -> None:
        validate_message(message)
        settings = self._settings
        username = password = None
        if settings.smtp_username and settings.smtp_password:
            username = settings.smtp_username
            password = settings.smtp_password.get_secret_value()
        try:
            await aiosmtplib.send(
                self._build(message),
                sender=self._envelope_from,
                # Explicit, so recipients are never taken from the headers.
                recipients=[message.to],
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=username,
                password=password,
                start_tls=starttls_mode(settings),
                tls_context=self._tls_context,
                timeout=_TIMEOUT_SECONDS,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            # aiosmtplib's errors carry the server's reply or the socket error, not the
            # AUTH exchange; the client-facing message carries only the exception type.
            log.error(
                "SMTP delivery via %s:%s failed: %s: %s",
                settings.smtp_host,
                settings.smtp_port,
                type(exc).__name__,
                exc,
            )
            raise UnavailableError(
                f"e-mail provider failed: {type(exc).__name__}", code="email_failed"
            ) from exc

    async def close(self) -> None:
        return None


def build_email_sender(settings: EmailSettings) -> EmailSender:
    if settings.provider == "smtp":
        return SmtpEmailSender(settings)
    return ConsoleEmailSender()
