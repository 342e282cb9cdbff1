"""Profile cards of many users in one query: the matches of an address book, a search page.

``server.users.profiles.cards`` builds the same cards from two ORM queries and
a model object per row; on the pages that list hundreds of people that was a
fifth of the time (1,000 matches: 110 ms against 29 ms here, measured in
bench/search). The cards are the same, field for field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from server.users.schemas import ProfileCard
from storage import sql

CARD_COLUMNS = """
SELECT CAST(u.id AS TEXT) AS user_id, u.code, u.nickname, u.first_name, u.last_name,
       CAST(u.avatar_media_id AS TEXT) AS avatar_media_id,
       p.user_id IS NOT NULL AS has_profile, p.age, p.gender,
       CAST(p.interests AS TEXT) AS interests"""

# The ids are joined, not compared with "= ANY": a list of thousands would
# make PostgreSQL read the whole users table. Order is the order given.
_POSTGRES = f"""{CARD_COLUMNS}
FROM unnest($1::uuid[]) WITH ORDINALITY AS wanted(id, n)
JOIN users AS u ON u.id = wanted.id
LEFT JOIN profiles AS p ON p.user_id = u.id
ORDER BY wanted.n
"""

_SQLITE = f"""{CARD_COLUMNS}
FROM json_each(?) AS wanted
JOIN users AS u ON u.id = wanted.value
LEFT JOIN profiles AS p ON p.user_id = u.id
ORDER BY wanted.key
"""


def card_from_row(row: dict[str, Any]) -> ProfileCard:
    """A card from a row of the columns above (as ``profiles._card`` builds it)."""
    has_profile = bool(row["has_profile"])
    return ProfileCard(
        user_id=row["user_id"],
        code=row["code"],
        nickname=row["nickname"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        age=row["age"] if has_profile else None,
        gender=row["gender"] if has_profile else "",
        interests=list(json.loads(row["interests"])) if has_profile else [],
        avatar_media_id=row["avatar_media_id"],
    )


async def profile_cards(
    user_ids: Sequence[str], *, conn: BaseDBAsyncClient | None = None
) -> list[ProfileCard]:
    """Cards of these users in the order given, each once; unknown ids left out."""
    ids = list(dict.fromkeys(user_ids))
    if not ids:
        return []
    conn = conn or sql.connection()
    if sql.is_postgres(conn):
        rows = await conn.execute_query_dict(_POSTGRES, [ids])
    else:
        rows = await conn.execute_query_dict(_SQLITE, [json.dumps(ids)])
    return [card_from_row(r) for r in rows]
