"""Public shapes of users."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class UserOut(BaseModel):
    id: str
    code: str
    nickname: str
    avatar_media_id: str | None = Field(
        description="Fetch with GET /v1/media/{id}/{variant}; any signed-in user may"
    )
    created_at: datetime


class MeOut(UserOut):
    phones: list[str]


class PresenceOut(BaseModel):
    user_id: str
    online: bool
    last_seen: float | None = Field(description="Unix seconds; null while online or never seen")


class PresenceList(BaseModel):
    users: list[PresenceOut]
