"""Public shapes of users."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class UserOut(BaseModel):
    id: str
    code: str
    nickname: str
    created_at: datetime


class MeOut(UserOut):
    phones: list[str]
