"""Public shapes of search and the event log."""

from __future__ import annotations

from pydantic import BaseModel, Field

from server.chats.schemas import MessageOut
from server.users.schemas import ProfileCard


class PeoplePage(BaseModel):
    people: list[ProfileCard]
    next_offset: int | None = Field(description="Pass as `offset` for the next page")


class MessageSearchPage(BaseModel):
    messages: list[MessageOut]
    next_offset: int | None


class EventStatus(BaseModel):
    id: int
    indexed: bool = Field(description="Search and contact matching reflect this write")
    position: int = Field(description="The last event the indexer applied")
