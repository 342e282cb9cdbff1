"""SMS and e-mail providers against real local servers: an HTTP endpoint and aiosmtpd."""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from config.errors import InvalidRequestError, UnavailableError
from config.settings import EmailSettings, SmsSettings
from server.auth.email import (
    ConsoleEmailSender,
    EmailMessage,
    SmtpEmailSender,
    build_email_sender,
    starttls_mode,
)
from server.auth.sms import ConsoleSmsSender, HttpSmsSender, build_sms_sender
from tests.support.tls import write_self_signed

LOOPBACK = "127.0.0.1"
MESSAGES_PATH = "/2010-04-01/Accounts/AC123/Messages.json"
SENDER = "Parley <no-reply@example.test>"
SMTP_USER = "parley"
SMTP_PASSWORD = "s3cret-smtp-pass"
LINK = "https://parley.test/verify?token=Zm9vYmFy"
# aiosmtpd warns (warnings.warn, in its server thread) when AUTH is required without TLS;
# the loopback AUTH tests do exactly that on purpose.
ALLOW_AUTH_WITHOUT_TLS = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port that is bound but not listening, so every connection is refused."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        yield sock.getsockname()[1]


def _message(to: str = "alice@example.test", subject: str = "Sign in to Parley") -> EmailMessage:
    return EmailMessage(to=to, subject=subject, text=f"Open this link to sign in:\n{LINK}\n")


# --- SMS over HTTP -----------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class MessagesEndpoint:
    """A Twilio-style Messages endpoint on loopback that records what it receives."""

    url: str = ""
    status: int = 201
    requests: list[RecordedRequest] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                headers=dict(request.headers),
                form={key: str(value) for key, value in form.items()},
            )
        )
        if self.status >= 300:
            body: dict[str, Any] = {"code": 21211, "message": "Invalid 'To' Phone Number"}
        else:
            body = {"sid": "SM0123456789abcdef", "status": "queued", "to": form.get("To")}
        return web.json_response(body, status=self.status)


@pytest.fixture
async def messages_endpoint() -> AsyncIterator[MessagesEndpoint]:
    """A running MessagesEndpoint on a free loopback port."""
    endpoint = MessagesEndpoint()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", endpoint.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        port = runner.addresses[0][1]
        endpoint.url = f"http://{LOOPBACK}:{port}{MESSAGES_PATH}"
        yield endpoint
    finally:
        await runner.cleanup()


def _sms_settings(url: str) -> SmsSettings:
    return SmsSettings(
        provider="http",
        http_url=url,
        http_username="AC123",
        http_password=SecretStr("tok"),
        sender="+15550001111",
    )


async def test_http_sms_posts_twilio_form_with_basic_auth(
    messages_endpoint: MessagesEndpoint,
) -> None:
    """HttpSmsSender POSTs To/From/Body as a form with HTTP Basic auth to the configured URL."""
    sender = HttpSmsSender(_sms_settings(messages_endpoint.url))
    try:
        await sender.send("+15557654321", "Your Parley code is 123456")
    finally:
        await sender.close()

    [request] = messages_endpoint.requests
    assert request.method == "POST"
    assert request.path == MESSAGES_PATH
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"AC123:tok").decode()
    assert request.form == {
        "To": "+15557654321",
        "From": "+15550001111",
        "Body": "Your Parley code is 123456",
    }


async def test_http_sms_refused_by_provider_is_sms_failed(
    messages_endpoint: MessagesEndpoint,
) -> None:
    """A 400 answer from the SMS provider becomes UnavailableError with code sms_failed."""
    messages_endpoint.status = 400
    sender = HttpSmsSender(_sms_settings(messages_endpoint.url))
    try:
        with pytest.raises(UnavailableError) as caught:
            await sender.send("+15557654321", "Your Parley code is 123456")
    finally:
        await sender.close()
    assert caught.value.code == "sms_failed"
    assert len(messages_endpoint.requests) == 1


async def test_http_sms_unreachable_provider_is_sms_failed(dead_port: int) -> None:
    """An SMS provider nobody listens for becomes UnavailableError with code sms_failed."""
    sender = HttpSmsSender(_sms_settings(f"http://{LOOPBACK}:{dead_port}{MESSAGES_PATH}"))
    try:
        with pytest.raises(UnavailableError) as caught:
            await sender.send("+15557654321", "Your Parley code is 123456")
    finally:
        await sender.close()
    assert caught.value.code == "sms_failed"
    assert "tok" not in caught.value.message


async def test_console_sms_logs_recipient_and_text(caplog: pytest.LogCaptureFixture) -> None:
    """ConsoleSmsSender logs a WARNING on parley.sms carrying sms_to and sms_text extras."""
    with caplog.at_level(logging.WARNING, logger="parley.sms"):
        await ConsoleSmsSender().send("+15557654321", "Your Parley code is 123456")
    [record] = [r for r in caplog.records if r.name == "parley.sms"]
    assert record.levelno == logging.WARNING
    assert record.__dict__["sms_to"] == "+15557654321"
    assert record.__dict__["sms_text"] == "Your Parley code is 123456"


def test_build_sms_sender_follows_the_provider_setting() -> None:
    """build_sms_sender returns the console sender by default and the HTTP one for http."""
    assert isinstance(build_sms_sender(SmsSettings()), ConsoleSmsSender)
    assert isinstance(build_sms_sender(_sms_settings("http://127.0.0.1:9/")), HttpSmsSender)


# --- E-mail over SMTP ----------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    login: bytes | None

    def parsed(self) -> email.message.EmailMessage:
        message = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        return message


@dataclass
class SmtpServer:
    """An aiosmtpd server on loopback that records deliveries and AUTH attempts."""

    port: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    auth_attempts: list[tuple[str, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None and isinstance(envelope.content, bytes)
        self.deliveries.append(
            Delivery(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.content,
                tls=session.ssl is not None,
                login=session.auth_data.login if session.auth_data else None,
            )
        )
        return "250 2.0.0 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.auth_attempts.append((mechanism, data.login))
        ok = data.login == SMTP_USER.encode() and data.password == SMTP_PASSWORD.encode()
        return AuthResult(success=ok, handled=False, auth_data=data)


@contextmanager
def _run_smtp_server(**smtp_options: Any) -> Iterator[SmtpServer]:
    recorder = SmtpServer(port=_free_port())
    controller = Controller(
        recorder,
        hostname=LOOPBACK,
        port=recorder.port,
        server_hostname="smtp.parley.test",
        authenticator=recorder.authenticate,
        **smtp_options,
    )
    controller.start()
    try:
        yield recorder
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server (no STARTTLS, AUTH optional)."""
    with _run_smtp_server() as server:
        yield server


@pytest.fixture
def smtp_auth_server() -> Iterator[SmtpServer]:
    """An SMTP server that requires AUTH and, on loopback, allows it without TLS."""
    with _run_smtp_server(auth_required=True, auth_require_tls=False) as server:
        yield server


@dataclass(frozen=True)
class TlsFiles:
    cert_pem: str
    certfile: Path
    keyfile: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1, written to a temporary directory."""
    files = write_self_signed(
        tmp_path_factory.mktemp("tls"), "parley test smtp", ca=True, names=("cert.pem", "key.pem")
    )
    return TlsFiles(
        cert_pem=files.certificate_pem, certfile=files.certificate, keyfile=files.private_key
    )


@pytest.fixture
def smtp_tls_server(tls_files: TlsFiles) -> Iterator[SmtpServer]:
    """An SMTP server that offers STARTTLS and requires AUTH, which it accepts only over TLS."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.certfile, tls_files.keyfile)
    with _run_smtp_server(tls_context=context, auth_required=True) as server:
        yield server


def _email_settings(port: int, *, password: str | None = None) -> EmailSettings:
    return EmailSettings(
        provider="smtp",
        smtp_host=LOOPBACK,
        smtp_port=port,
        smtp_username=SMTP_USER if password else None,
        smtp_password=SecretStr(password) if password else None,
        sender=SENDER,
    )


async def test_smtp_delivers_message_with_headers(smtp_server: SmtpServer) -> None:
    """SmtpEmailSender delivers one envelope with From/To/Subject/Date/Message-ID and the text."""
    sender = SmtpEmailSender(_email_settings(smtp_server.port))
    await sender.send(_message())
    await sender.close()

    [delivery] = smtp_server.deliveries
    assert delivery.mail_from == "no-reply@example.test"
    assert delivery.rcpt_tos == ["alice@example.test"]
    assert delivery.login is None and not delivery.tls
    assert smtp_server.auth_attempts == []
    parsed = delivery.parsed()
    assert parsed["From"] == SENDER
    assert parsed["To"] == "alice@example.test"
    assert parsed["Subject"] == "Sign in to Parley"
    sent_at = parsedate_to_datetime(parsed["Date"])
    assert abs(datetime.datetime.now(datetime.UTC) - sent_at) < datetime.timedelta(minutes=1)
    assert parsed["Message-ID"].startswith("<")
    assert parsed["Message-ID"].endswith("@example.test>")
    assert parsed.get_content_type() == "text/plain"
    # On the wire every line ends in CRLF (RFC 5322 section 2.1).
    assert parsed.get_content() == f"Open this link to sign in:\r\n{LINK}\r\n"


async def test_smtp_message_ids_are_unique(smtp_server: SmtpServer) -> None:
    """Each message sent gets its own Message-ID."""
    sender = SmtpEmailSender(_email_settings(smtp_server.port))
    await sender.send(_message())
    await sender.send(_message())
    first, second = (d.parsed()["Message-ID"] for d in smtp_server.deliveries)
    assert first != second


@ALLOW_AUTH_WITHOUT_TLS
async def test_smtp_logs_in_with_configured_credentials(smtp_auth_server: SmtpServer) -> None:
    """With a username and password set, the sender authenticates before sending."""
    sender = SmtpEmailSender(_email_settings(smtp_auth_server.port, password=SMTP_PASSWORD))
    await sender.send(_message())

    assert [login for _, login in smtp_auth_server.auth_attempts] == [SMTP_USER.encode()]
    [delivery] = smtp_auth_server.deliveries
    assert delivery.login == SMTP_USER.encode()
    assert delivery.rcpt_tos == ["alice@example.test"]


@ALLOW_AUTH_WITHOUT_TLS
async def test_smtp_wrong_password_is_email_failed_without_the_password(
    smtp_auth_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused login becomes UnavailableError email_failed; neither error nor log shows it."""
    wrong = "wrong-Pa55word"
    sender = SmtpEmailSender(_email_settings(smtp_auth_server.port, password=wrong))
    with (
        caplog.at_level(logging.DEBUG, logger="parley.email"),
        pytest.raises(UnavailableError) as caught,
    ):
        await sender.send(_message())

    assert caught.value.code == "email_failed"
    assert wrong not in str(caught.value)
    assert wrong not in caught.value.message
    logged = [r.getMessage() for r in caplog.records if r.name == "parley.email"]
    assert logged, "the failure is logged for operators"
    assert all(wrong not in line for line in logged)
    # aiosmtplib tries each mechanism the server offers (PLAIN, then LOGIN).
    assert smtp_auth_server.auth_attempts
    assert {login for _, login in smtp_auth_server.auth_attempts} == {SMTP_USER.encode()}
    assert smtp_auth_server.deliveries == []


async def test_smtp_unreachable_is_email_failed(dead_port: int) -> None:
    """An SMTP server nobody listens for becomes UnavailableError with code email_failed."""
    sender = SmtpEmailSender(_email_settings(dead_port, password=SMTP_PASSWORD))
    with pytest.raises(UnavailableError) as caught:
        await sender.send(_message())
    assert caught.value.code == "email_failed"
    assert SMTP_PASSWORD not in caught.value.message


async def test_smtp_upgrades_to_starttls_when_offered(
    smtp_tls_server: SmtpServer, tls_files: TlsFiles
) -> None:
    """When the server offers STARTTLS the sender upgrades, verifies it, then logs in over TLS."""
    trust = ssl.create_default_context(cadata=tls_files.cert_pem)
    settings = _email_settings(smtp_tls_server.port, password=SMTP_PASSWORD)
    sender = SmtpEmailSender(settings, tls_context=trust)
    await sender.send(_message())

    [delivery] = smtp_tls_server.deliveries
    assert delivery.tls
    assert delivery.login == SMTP_USER.encode()


async def test_smtp_untrusted_certificate_is_email_failed(smtp_tls_server: SmtpServer) -> None:
    """A STARTTLS certificate that does not verify fails the send instead of falling back."""
    sender = SmtpEmailSender(_email_settings(smtp_tls_server.port, password=SMTP_PASSWORD))
    with pytest.raises(UnavailableError) as caught:
        await sender.send(_message())
    assert caught.value.code == "email_failed"
    assert smtp_tls_server.auth_attempts == []
    assert smtp_tls_server.deliveries == []


@pytest.mark.parametrize(
    ("port", "password", "expected"),
    [(25, None, False), (25, SMTP_PASSWORD, None), (587, None, None), (2525, SMTP_PASSWORD, None)],
)
def test_starttls_is_skipped_only_for_port_25_without_credentials(
    port: int, password: str | None, expected: bool | None
) -> None:
    """STARTTLS is used when offered, except on port 25 with no credentials configured."""
    assert starttls_mode(_email_settings(port, password=password)) is expected


@pytest.mark.parametrize(
    "to",
    [
        "a@b.c\r\nBcc: x@y.z",
        "a@b.c\nBcc: x@y.z",
        "a@b.c\rBcc: x@y.z",
        "a@b.c\u2028Bcc: x@y.z",
        "a@b.c, x@y.z",
        "Eve <x@y.z>",
        "not-an-address",
        "a@b@c.d",
        "",
    ],
)
async def test_smtp_refuses_a_malformed_recipient(smtp_server: SmtpServer, to: str) -> None:
    """A recipient with a line break, a second address or no address shape is invalid_email."""
    sender = SmtpEmailSender(_email_settings(smtp_server.port))
    with pytest.raises(InvalidRequestError) as caught:
        await sender.send(_message(to=to))
    assert caught.value.code == "invalid_email"
    assert smtp_server.deliveries == []


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: x@y.z", "Hi\nBcc: x@y.z", "Hi\rthere"])
async def test_smtp_refuses_a_subject_with_a_line_break(
    smtp_server: SmtpServer, subject: str
) -> None:
    """A subject containing CR or LF is invalid_email and nothing is sent."""
    sender = SmtpEmailSender(_email_settings(smtp_server.port))
    with pytest.raises(InvalidRequestError) as caught:
        await sender.send(_message(subject=subject))
    assert caught.value.code == "invalid_email"
    assert smtp_server.deliveries == []


def test_smtp_sender_setting_must_hold_an_address() -> None:
    """A PARLEY_EMAIL_SENDER without an address stops the SMTP sender from being built."""
    with pytest.raises(ValueError, match="PARLEY_EMAIL_SENDER"):
        SmtpEmailSender(EmailSettings(provider="smtp", sender="Parley"))


async def test_console_email_logs_the_message_in_extras(caplog: pytest.LogCaptureFixture) -> None:
    """A WARNING on parley.email with the whole mail in its text and email_to/subject/text extras.

    The text carries the body too: the text log format prints no extras, and the
    link in it is what a developer reads the log for.
    """
    with caplog.at_level(logging.WARNING, logger="parley.email"):
        await ConsoleEmailSender().send(_message())
    [record] = [r for r in caplog.records if r.name == "parley.email"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"email to alice@example.test: Sign in to Parley\nOpen this link to sign in:\n{LINK}\n"
    )
    assert record.__dict__["email_to"] == "alice@example.test"
    assert record.__dict__["email_subject"] == "Sign in to Parley"
    assert record.__dict__["email_text"] == f"Open this link to sign in:\n{LINK}\n"


async def test_console_email_refuses_header_injection(caplog: pytest.LogCaptureFixture) -> None:
    """ConsoleEmailSender applies the same recipient check, so dev and prod agree."""
    with pytest.raises(InvalidRequestError) as caught:
        await ConsoleEmailSender().send(_message(to="a@b.c\r\nBcc: x@y.z"))
    assert caught.value.code == "invalid_email"
    assert not [r for r in caplog.records if r.name == "parley.email"]


def test_build_email_sender_follows_the_provider_setting() -> None:
    """build_email_sender returns the console sender by default and the SMTP one for smtp."""
    assert isinstance(build_email_sender(EmailSettings()), ConsoleEmailSender)
    assert isinstance(build_email_sender(_email_settings(2525)), SmtpEmailSender)
