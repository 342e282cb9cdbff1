"""``ParleyClient``: sign in by phone, connect a socket, send and receive.

    client = ParleyClient("http://127.0.0.1:8000")
    start = await client.start_phone_sign_in("+14155552671")
    await client.verify_phone(start["request_id"], code_from_sms, nickname="ana")
    await client.connect()
    conv = await client.open_direct(other_user_id)
    await client.send_text(conv["id"], "hello")
    message = await client.next_message()

The socket reconnects on its own; before each (re)connect the access token is
refreshed when it is about to expire, so a long-lived client stays signed in.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import engineio
import httpx
import socketio

from client.account import AccountMethods
from client.e2ee import E2EEMethods
from client.media import MediaMethods
from client.social import SocialMethods
from client.tips import TIP_UPDATED, TipMethods

log = logging.getLogger(__name__)

MESSAGE_SEND = "message:send"
MESSAGE_EDIT = "message:edit"
MESSAGE_DELETE = "message:delete"
RECEIPT = "receipt"
TYPING_UPDATE = "typing:update"
MESSAGE_NEW = "message:new"
RECEIPT_UPDATED = "receipt:updated"
TYPING = "typing"
SESSION_REVOKED = "session:revoked"
KEYS_CHANGED = "keys:changed"
PRESENCE_UPDATED = "presence:updated"
CONTACT_JOINED = "contact:joined"
STATUS_UPDATED = "status:updated"
CHAT_REQUEST_NEW = "chat_request:new"
CHAT_REQUEST_UPDATED = "chat_request:updated"

# Refresh the access token when less than this many seconds remain.
_REFRESH_MARGIN = 60


class _EngineIOClient(engineio.AsyncClient):  # type: ignore[misc]
    """python-engineio's client, reading each long-polling body where errors are handled.

    A response cut short (say its node died mid-body, behind a balancer) raised
    ``aiohttp.ClientPayloadError`` outside the library's error handling: in the
    read loop the client never noticed it had lost the server, and in a
    reconnect's handshake it ended the reconnect loop for good.
    """

    async def _send_request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        response = await super()._send_request(
            method, url, headers=headers, body=body, timeout=timeout
        )
        if response is None or isinstance(response, str):
            return response  # the library's own way of saying "failed"
        try:
            await response.read()  # kept by aiohttp for the library's later read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return str(exc) or type(exc).__name__
        return response


class _SocketIOClient(socketio.AsyncClient):  # type: ignore[misc]
    def _engineio_client_class(self) -> type[engineio.AsyncClient]:
        return _EngineIOClient


class ParleyApiError(Exception):
    """An error answer from Parley, HTTP or socket ack: ``status``, ``code``, ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ParleyClient(AccountMethods, E2EEMethods, MediaMethods, SocialMethods, TipMethods):
    def __init__(
        self,
        base_url: str,
        *,
        device_name: str = "parley-python-sdk",
        transports: list[str] | None = None,
        reconnection_delay: float = 0.5,
        reconnection_delay_max: float = 3.0,
        http_timeout: float = 15.0,
        local_address: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.device_name = device_name
        self.transports = transports or ["websocket"]
        # The source address of every connection (HTTP and socket), e.g. one of
        # 127.0.0.0/8 per client so a balancer hashing client addresses spreads
        # local test clients over its nodes.
        self.local_address = local_address
        # How https (and wss) servers are verified, e.g. a context trusting a
        # private CA or a self-signed test certificate; None: the system's CAs.
        self.ssl_context = ssl_context
        verify: ssl.SSLContext | bool = ssl_context or True
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=http_timeout,
            verify=verify,
            transport=httpx.AsyncHTTPTransport(local_address=local_address, verify=verify)
            if local_address
            else None,
        )
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self.access_expires_at = 0.0
        self.user_id: str | None = None
        self.session_id: str | None = None
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # Highest seq delivered per conversation, and the ids delivered (to drop repeats).
        self.positions: dict[str, int] = {}
        self.received_ids: set[str] = set()
        self._ever_connected = False
        self._catching_up: asyncio.Task[None] | None = None
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.connect_errors: list[Any] = []
        self._refresh_lock = asyncio.Lock()
        self._e2ee_init()
        self.sio = _SocketIOClient(
            reconnection=True,
            reconnection_delay=reconnection_delay,
            reconnection_delay_max=reconnection_delay_max,
            handle_sigint=False,
            # A factory: engine.io makes (and closes) one session per connection.
            http_session=self._http_session if local_address or ssl_context else None,
        )
        self._connected = asyncio.Event()
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on(MESSAGE_NEW, self._on_message)
        self.sio.on(SESSION_REVOKED, self._on_session_revoked)
        self.sio.on(RECEIPT_UPDATED, self._on_event(RECEIPT_UPDATED))
        self.sio.on(TYPING, self._on_event(TYPING))
        self.sio.on(KEYS_CHANGED, self._on_keys_changed)
        self.sio.on(PRESENCE_UPDATED, self._on_event(PRESENCE_UPDATED))
        for social in (
            CONTACT_JOINED,
            STATUS_UPDATED,
            CHAT_REQUEST_NEW,
            CHAT_REQUEST_UPDATED,
            TIP_UPDATED,
        ):
            self.sio.on(social, self._on_event(social))

    def _http_session(self) -> aiohttp.ClientSession:
        """The socket's session, with this client's source address and TLS context."""
        connector = aiohttp.TCPConnector(
            local_addr=(self.local_address, 0) if self.local_address else None,
            ssl=self.ssl_context or True,
        )
        return aiohttp.ClientSession(connector=connector)

    # -- HTTP -----------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
    ) -> Any:
        headers = {}
        if auth:
            headers["Authorization"] = f"Bearer {await self.fresh_access_token()}"
        response = await self.http.request(method, path, json=json, params=params, headers=headers)
        return self._decode(response)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
            raise ParleyApiError(
                response.status_code,
                str(error.get("code", "http_error")),
                str(error.get("message", response.text[:200])),
            )
        return body

    async def start_phone_sign_in(self, phone: str, region: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"phone": phone}
        if region:
            body["region"] = region
        result: dict[str, Any] = await self.request(
            "POST", "/v1/auth/phone/start", json=body, auth=False
        )
        return result

    async def verify_phone(
        self, request_id: str, code: str, nickname: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "request_id": request_id,
            "code": code,
            "device_name": self.device_name,
        }
        if nickname is not None:
            body["nickname"] = nickname
        tokens: dict[str, Any] = await self.request(
            "POST", "/v1/auth/phone/verify", json=body, auth=False
        )
        self._store_tokens(tokens)
        return tokens

    async def refresh(self) -> dict[str, Any]:
        if self.refresh_token is None:
            raise ParleyApiError(401, "unauthenticated", "not signed in")
        tokens: dict[str, Any] = await self.request(
            "POST", "/v1/auth/refresh", json={"refresh_token": self.refresh_token}, auth=False
        )
        self._store_tokens(tokens)
        return tokens

    async def fresh_access_token(self) -> str:
        async with self._refresh_lock:
            if self.access_token is None:
                raise ParleyApiError(401, "unauthenticated", "not signed in")
            if self.access_expires_at - time.time() < _REFRESH_MARGIN and self.refresh_token:
                await self.refresh()
            assert self.access_token is not None
            return self.access_token

    def _store_tokens(self, tokens: dict[str, Any]) -> None:
        self.access_token = tokens["access_token"]
        self.refresh_token = tokens["refresh_token"]
        self.access_expires_at = time.time() + int(tokens["expires_in"])
        self.user_id = tokens["user_id"]
        self.session_id = tokens["session_id"]

    async def me(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/me")
        return result

    async def open_direct(self, user_id: str, *, mode: str = "encrypted") -> dict[str, Any]:
        """The direct conversation with ``user_id`` in ``mode`` (encrypted or plaintext)."""
        result: dict[str, Any] = await self.request(
            "POST", "/v1/conversations/direct", json={"user_id": user_id, "mode": mode}
        )
        return result

    async def create_group(
        self, title: str, member_ids: list[str], *, mode: str = "encrypted", topic: str = ""
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST",
            "/v1/conversations/groups",
            json={"title": title, "member_ids": member_ids, "mode": mode, "topic": topic},
        )
        return result

    async def update_conversation(self, conversation_id: str, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "PATCH", f"/v1/conversations/{conversation_id}", json=changes
        )
        return result

    async def add_members(self, conversation_id: str, member_ids: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", f"/v1/conversations/{conversation_id}/members", json={"member_ids": member_ids}
        )
        return result

    async def remove_member(self, conversation_id: str, user_id: str) -> None:
        """Remove someone from a group (your own id: leave it)."""
        await self.request("DELETE", f"/v1/conversations/{conversation_id}/members/{user_id}")

    async def set_role(self, conversation_id: str, user_id: str, role: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "PUT",
            f"/v1/conversations/{conversation_id}/members/{user_id}/role",
            json={"role": role},
        )
        return result

    async def conversations(self, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        result: dict[str, Any] = await self.request("GET", "/v1/conversations", params=params)
        return result

    async def history(
        self,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if before_seq is not None:
            params["before_seq"] = before_seq
        if after_seq is not None:
            params["after_seq"] = after_seq
        result: dict[str, Any] = await self.request(
            "GET", f"/v1/conversations/{conversation_id}/messages", params=params
        )
        return result

    # -- socket ---------------------------------------------------------------

    async def connect(self, *, timeout: float = 10.0) -> None:
        """Open the socket; raises ``ParleyApiError`` when the server refuses it."""

        async def auth() -> dict[str, str]:
            return {"token": await self.fresh_access_token()}

        try:
            await self.sio.connect(
                self.base_url,
                auth=auth,
                transports=self.transports,
                wait_timeout=timeout,
                retry=False,
            )
        except socketio.exceptions.ConnectionError as exc:
            detail = self.connect_errors[-1] if self.connect_errors else None
            if isinstance(detail, dict) and isinstance(detail.get("data"), dict):
                detail = detail["data"]
            if isinstance(detail, dict) and "code" in detail:
                raise ParleyApiError(401, str(detail["code"]), str(detail.get("message"))) from exc
            raise ParleyApiError(0, "connect_failed", str(exc)) from exc

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def emit(self, event: str, payload: Any, *, timeout: float = 10.0) -> Any:
        """Emit with an ack; returns the ack's ``data`` or raises its ``error``."""
        ack = await self.sio.call(event, payload, timeout=timeout)
        if isinstance(ack, dict) and "error" in ack:
            error = ack["error"]
            raise ParleyApiError(400, str(error.get("code")), str(error.get("message")))
        if not isinstance(ack, dict) or "data" not in ack:
            raise ParleyApiError(0, "bad_ack", f"unexpected ack {ack!r}")
        return ack["data"]

    async def send_text(
        self,
        conversation_id: str,
        text: str,
        *,
        client_msg_id: str | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        payload = {
            "conversation_id": conversation_id,
            "client_msg_id": client_msg_id or uuid.uuid4().hex,
            "kind": "text",
            "body": {"text": text},
        }
        result: dict[str, Any] = await self.emit(MESSAGE_SEND, payload, timeout=timeout)
        return result

    async def edit_text(
        self, conversation_id: str, message_id: str, text: str, *, timeout: float = 10.0
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.emit(
            MESSAGE_EDIT,
            {
                "conversation_id": conversation_id,
                "message_id": message_id,
                "client_msg_id": uuid.uuid4().hex,
                "body": {"text": text},
            },
            timeout=timeout,
        )
        return result

    async def delete_message(
        self, conversation_id: str, message_id: str, *, timeout: float = 10.0
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.emit(
            MESSAGE_DELETE,
            {
                "conversation_id": conversation_id,
                "message_id": message_id,
                "client_msg_id": uuid.uuid4().hex,
            },
            timeout=timeout,
        )
        return result

    async def mark_read(self, conversation_id: str, seq: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.emit(
            RECEIPT, {"conversation_id": conversation_id, "seq": seq, "kind": "read"}
        )
        return result

    async def typing(self, conversation_id: str, state: str = "start") -> None:
        await self.emit(TYPING_UPDATE, {"conversation_id": conversation_id, "state": state})

    async def sync(self, positions: dict[str, int], *, limit: int = 100) -> list[dict[str, Any]]:
        """Every message missed since ``positions`` (conversation id -> last seq), all pages.

        Also advances ``positions`` in place, so calling it again after a reconnect
        fetches only what is new.
        """
        missed: list[dict[str, Any]] = []
        while True:
            cursor: str | None = None
            more = False
            while True:  # one pass over all conversations, page by page
                page = await self.request(
                    "POST",
                    "/v1/sync",
                    json={"positions": positions, "cursor": cursor, "limit": limit},
                )
                for conversation in page["conversations"]:
                    messages = conversation["messages"]
                    missed.extend(messages)
                    cid = conversation["conversation_id"]
                    if messages:
                        known = cid in positions
                        positions[cid] = messages[-1]["seq"]
                        more = more or (known and conversation["has_more"])
                for removed in page["removed"]:
                    positions.pop(removed, None)
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            if not more:
                return missed

    async def next_event(self, name: str, timeout: float = 10.0) -> Any:
        """The data of the next server event called ``name``; others are skipped."""
        async with asyncio.timeout(timeout):
            while True:
                event, data = await self.events.get()
                if event == name:
                    return data

    async def next_message(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.messages.get(), timeout)

    def on(self, event: str, handler: Callable[[Any], Awaitable[None] | None]) -> None:
        """Also call ``handler`` for a server event (in addition to the queues)."""
        self.sio.on(event, handler)

    async def close(self) -> None:
        if self._catching_up is not None and not self._catching_up.done():
            self._catching_up.cancel()
        # shutdown() also stops a reconnect loop that is still trying a dead node, but
        # a failed attempt leaves engine.io's aiohttp session open; disconnecting the
        # engine.io client (a no-op but for that, once shut down) closes it.
        await self.sio.shutdown()
        await self.sio.eio.disconnect(abort=True)
        await self.http.aclose()

    async def __aenter__(self) -> ParleyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- handlers -------------------------------------------------------------

    async def _on_connect(self) -> None:
        self._connected.set()
        if self._ever_connected:
            # Fan-out is best effort: after a reconnect, fetch what was missed.
            self._catch_up()
        self._ever_connected = True

    def _catch_up(self) -> None:
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.get_running_loop().create_task(self._sync_missed())

    async def _sync_missed(self) -> None:
        for attempt in range(6):
            try:
                for message in await self.sync(dict(self.positions)):
                    await self._deliver(message)
                return
            except Exception:
                # The server may be briefly unavailable (a node or Redis restarting).
                log.warning("catch-up sync failed (attempt %d)", attempt + 1, exc_info=True)
                await asyncio.sleep(min(0.25 * 2**attempt, 5))

    async def _deliver(self, message: dict[str, Any]) -> bool:
        """Hand a message to the app once, whichever way (live or sync) it came.

        ``positions`` only moves over contiguous seqs, so a gap stays visible
        until a sync fills it. True when this message revealed a gap.
        """
        gap = False
        cid, seq = message.get("conversation_id"), message.get("seq")
        if isinstance(cid, str) and isinstance(seq, int):
            known = self.positions.get(cid)
            if known is None or seq == known + 1:
                self.positions[cid] = seq
            elif seq > known + 1:
                gap = True
        message_id = message.get("id")
        if isinstance(message_id, str) and message_id not in self.received_ids:
            self.received_ids.add(message_id)
            await self.messages.put(message)
        return gap

    async def _on_disconnect(self, reason: Any = None) -> None:
        self._connected.clear()

    async def _on_connect_error(self, data: Any) -> None:
        self.connect_errors.append(data)

    async def _on_message(self, data: dict[str, Any]) -> None:
        if await self._deliver(data):
            self._catch_up()  # a seq was skipped: something was lost in fan-out

    async def _on_session_revoked(self, data: Any) -> None:
        await self.events.put((SESSION_REVOKED, data))

    async def _on_keys_changed(self, data: Any) -> None:
        if isinstance(data, dict):
            self.forget_keys(str(data.get("user_id")))
        await self.events.put((KEYS_CHANGED, data))

    def _on_event(self, name: str) -> Callable[[Any], Awaitable[None]]:
        async def handler(data: Any) -> None:
            await self.events.put((name, data))

        return handler
