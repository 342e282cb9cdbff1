"""Profiles, status, contacts, blocks, chat requests and search in the SDK."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any


class SocialMethods:
    """HTTP calls for the social side; mixed into ParleyClient."""

    if TYPE_CHECKING:

        async def request(
            self,
            method: str,
            path: str,
            *,
            json: Any = None,
            params: dict[str, Any] | None = None,
            auth: bool = True,
        ) -> Any: ...

    # -- profile and status -----------------------------------------------------

    async def profile(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/me/profile")
        return result

    async def update_profile(self, **changes: Any) -> dict[str, Any]:
        """nickname, first_name, last_name, age, gender, interests, visibility; has ``event_id``."""
        result: dict[str, Any] = await self.request("PATCH", "/v1/me/profile", json=changes)
        return result

    async def profile_card(self, user_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/v1/users/{user_id}/profile")
        return result

    async def interests(self) -> list[dict[str, str]]:
        result: list[dict[str, str]] = (await self.request("GET", "/v1/interests"))["interests"]
        return result

    async def set_status(
        self, state: str, text: str = "", expires_at: datetime | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"state": state, "text": text}
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        result: dict[str, Any] = await self.request("PUT", "/v1/me/status", json=body)
        return result

    async def clear_status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("DELETE", "/v1/me/status")
        return result

    async def contact_updates(self, since: int = 0, limit: int = 100) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", "/v1/contacts/updates", params={"since": since, "limit": limit}
        )
        return result

    # -- contacts -----------------------------------------------------------------

    async def upload_contacts(
        self, numbers: list[str], region: str | None = None
    ) -> dict[str, Any]:
        """Replace the address book; ``{matches: [{contact, indexes}], stored, invalid}``."""
        result: dict[str, Any] = await self.request(
            "PUT", "/v1/contacts", json={"numbers": numbers, "region": region}
        )
        return result

    async def change_contacts(
        self,
        add: list[str] | None = None,
        remove: list[str] | None = None,
        region: str | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "PATCH",
            "/v1/contacts",
            json={"add": add or [], "remove": remove or [], "region": region},
        )
        return result

    async def contacts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self.request("GET", "/v1/contacts"))["contacts"]
        return result

    async def clear_contacts(self) -> None:
        await self.request("DELETE", "/v1/contacts")

    # -- blocks -------------------------------------------------------------------

    async def block(self, user_id: str) -> None:
        await self.request("PUT", f"/v1/blocks/{user_id}")

    async def unblock(self, user_id: str) -> None:
        await self.request("DELETE", f"/v1/blocks/{user_id}")

    async def blocks(self) -> list[str]:
        result: list[str] = (await self.request("GET", "/v1/blocks"))["user_ids"]
        return result

    # -- presence -----------------------------------------------------------------

    async def presence(self, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        """``{user_id: {"online", "last_seen"}}`` for up to 100 users (people you share a
        conversation with; anyone else reads as never seen)."""
        answer = await self.request("GET", "/v1/presence", params={"user_ids": ",".join(user_ids)})
        return {u["user_id"]: {k: u[k] for k in ("online", "last_seen")} for u in answer["users"]}

    # -- chat requests -------------------------------------------------------------

    async def request_chat(
        self, user_id: str, text: str = "", *, mode: str = "encrypted"
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", "/v1/chat-requests", json={"user_id": user_id, "text": text, "mode": mode}
        )
        return result

    async def chat_requests(
        self, box: str = "incoming", state: str | None = "pending", limit: int = 50
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"box": box, "limit": limit}
        if state:
            params["state"] = state
        result: list[dict[str, Any]] = (
            await self.request("GET", "/v1/chat-requests", params=params)
        )["requests"]
        return result

    async def accept_chat_request(self, request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", f"/v1/chat-requests/{request_id}/accept"
        )
        return result

    async def decline_chat_request(self, request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", f"/v1/chat-requests/{request_id}/decline"
        )
        return result

    async def cancel_chat_request(self, request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("DELETE", f"/v1/chat-requests/{request_id}")
        return result

    # -- search ---------------------------------------------------------------------

    async def search_people(
        self,
        q: str = "",
        interests: list[str] | None = None,
        *,
        limit: int = 20,
        offset: int = 0,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"q": q, "limit": limit, "offset": offset}
        if interests:
            params["interests"] = ",".join(interests)
        result: dict[str, Any] = await self.request("GET", "/v1/users/search", params=params)
        return result

    async def search_messages(
        self, q: str, *, conversation_id: str | None = None, limit: int = 20, offset: int = 0
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"q": q, "limit": limit, "offset": offset}
        if conversation_id:
            params["conversation_id"] = conversation_id
        result: dict[str, Any] = await self.request("GET", "/v1/search/messages", params=params)
        return result

    async def event_status(self, event_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/v1/events/{event_id}")
        return result

    async def wait_indexed(self, event_id: int, *, timeout: float = 10.0) -> None:
        """Wait until search reflects the write behind ``event_id`` (seed 000's loader)."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while not (await self.event_status(event_id))["indexed"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"event {event_id} not indexed within {timeout} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
