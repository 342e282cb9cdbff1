"""Public shapes of contacts."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server.users.schemas import ProfileCard

# Anything a phone's address book holds; normalized (or refused) server-side.
RawNumber = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Region = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")]


class AddressBook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    numbers: Annotated[list[RawNumber], Field(max_length=5000)] = Field(
        description="Phone numbers as the address book has them (up to 5,000)"
    )
    region: Region | None = Field(
        default=None, description="ISO country of the phone, for numbers without +country code"
    )


class AddressBookChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: Annotated[list[RawNumber], Field(max_length=5000)] = []
    remove: Annotated[list[RawNumber], Field(max_length=5000)] = []
    region: Region | None = None


class Match(BaseModel):
    contact: ProfileCard
    indexes: list[int] = Field(description="Positions of the submitted numbers that matched")


class MatchResult(BaseModel):
    matches: list[Match]
    stored: int = Field(description="Distinct valid numbers taken from this request")
    invalid: list[int] = Field(description="Positions of entries that are not phone numbers")


class ContactOut(BaseModel):
    contact: ProfileCard
    mutual: bool = Field(description="They have your number too: you see each other's status")


class ContactList(BaseModel):
    contacts: list[ContactOut]
