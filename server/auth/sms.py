"""Sending SMS: the console provider (embedded default) and a Twilio-compatible HTTP one."""

from __future__ import annotations

import logging
from typing import Protocol

import httpx

from config.errors import UnavailableError
from config.settings import SmsSettings

log = logging.getLogger("parley.sms")


class SmsSender(Protocol):
    async def send(self, to: str, text: str) -> None: ...

    async def close(self) -> None: ...


class ConsoleSmsSender:
    """Writes each message to the log instead of sending it (development only)."""

    async def send(self, to: str, text: str) -> None:
        log.warning("sms to %s: %s", to, text, extra={"sms_to": to, "sms_text": text})

    async def close(self) -> None:
        return None


class HttpSmsSender:
    """Posts to a Twilio-style Messages endpoint (form fields To, From, Body; basic auth)."""

    def __init__(self, settings: SmsSettings, client: httpx.AsyncClient | None = None) -> None:
        if not settings.http_url:
            raise ValueError("PARLEY_SMS_HTTP_URL is required when PARLEY_SMS_PROVIDER=http")
        self._url = settings.http_url
        self._sender = settings.sender
        auth = None
        if settings.http_username and settings.http_password:
            auth = httpx.BasicAuth(
                settings.http_username, settings.http_password.get_secret_value()
            )
        self._client = client or httpx.AsyncClient(timeout=10, auth=auth)

    async def send(self, to: str, text: str) -> None:
        try:
            response = await self._client.post(
                self._url, data={"To": to, "From": self._sender, "Body": text}
            )
        except httpx.HTTPError as exc:
            raise UnavailableError(
                f"SMS provider unreachable: {type(exc).__name__}", code="sms_failed"
            ) from exc
        if response.status_code >= 300:
            log.error("SMS provider answered %s", response.status_code)
            raise UnavailableError("SMS provider refused the message", code="sms_failed")

    async def close(self) -> None:
        await self._client.aclose()


def build_sms_sender(settings: SmsSettings) -> SmsSender:
    if settings.provider == "http":
        return HttpSmsSender(settings)
    return ConsoleSmsSender()
