"""Public shapes of users."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server.text import SingleLine


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


Gender = Literal["", "female", "male", "nonbinary", "other"]
Visibility = Literal["everyone", "contacts", "nobody"]
StatusState = Literal["available", "away", "busy", "party"]
Name = Annotated[str, StringConstraints(max_length=100), SingleLine]
Slug = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")]


class StatusOut(BaseModel):
    state: str = Field(description="`available`, `away`, `busy`, `party`, or empty when none")
    text: str
    expires_at: datetime | None
    updated_at: datetime | None


class ProfileCard(BaseModel):
    """What a signed-in user sees of another (search results, contacts, requests)."""

    user_id: str
    code: str
    nickname: str
    first_name: str
    last_name: str
    age: int | None
    gender: str
    interests: list[str]
    avatar_media_id: str | None
    shared_interests: int | None = Field(
        default=None, description="In people search: interests shared with you"
    )
    limited: bool = Field(
        default=False,
        description="Only the handle, nickname and avatar: the owner's visibility keeps "
        "the rest from people who neither find them in search nor share a conversation",
    )


class ProfileOut(ProfileCard):
    visibility: str
    status: StatusOut


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nickname: Annotated[str, StringConstraints(max_length=64), SingleLine] | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    age: Annotated[int, Field(ge=13, le=120)] | None = None
    clear_age: bool = False
    gender: Gender | None = None
    interests: Annotated[list[Slug], Field(max_length=20)] | None = Field(
        default=None, description="Slugs from GET /v1/interests"
    )
    visibility: Visibility | None = Field(
        default=None,
        description="Who may find you in people search: everyone, contacts (people whose "
        "number is in your address book), nobody",
    )


class ProfileUpdated(ProfileOut):
    event_id: int = Field(description="GET /v1/events/{id} tells when search has caught up")


class StatusRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: StatusState
    text: Annotated[str, StringConstraints(max_length=140), SingleLine] = ""
    expires_at: datetime | None = Field(
        default=None, description="When the status lapses (within 7 days); none = until changed"
    )


class StatusChangeOut(BaseModel):
    id: int
    user_id: str
    state: str
    text: str
    expires_at: datetime | None
    created_at: datetime


class StatusChangePage(BaseModel):
    updates: list[StatusChangeOut]
    next_since: int = Field(description="Pass as `since` to get what came after")
    has_more: bool


class Interest(BaseModel):
    slug: str
    label: str


class InterestList(BaseModel):
    interests: list[Interest]


class BlockList(BaseModel):
    user_ids: list[str]
