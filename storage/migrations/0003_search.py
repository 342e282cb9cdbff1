"""The search index tables (storage/search): SQLite FTS5 or PostgreSQL pg_trgm.

Not models: the index is derived data that `parley reindex` rebuilds. The DDL is
frozen here, not imported from the application, like any migration.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

# Names and texts are stored normalized (case folded, accents stripped, words
# of letters and digits separated by one blank); the FTS5 columns hold them
# padded the way pg_trgm pads words so the trigram tokenizer sees pg_trgm's
# trigrams. Instants are microseconds since the epoch. The default detail=full
# keeps positions: a bigger index, but bm25() (which orders the candidates)
# is several times cheaper than with detail=none.
SQLITE = [
    """CREATE TABLE search_people (
        id INTEGER PRIMARY KEY,
        user_id TEXT NOT NULL UNIQUE,
        visibility TEXT NOT NULL
    )""",
    "CREATE VIRTUAL TABLE search_people_fts USING fts5(name, nickname, tokenize='trigram')",
    """CREATE TABLE search_person_interests (
        user_id TEXT NOT NULL,
        interest TEXT NOT NULL,
        PRIMARY KEY (user_id, interest)
    ) WITHOUT ROWID""",
    "CREATE INDEX search_person_interests_interest ON search_person_interests (interest, user_id)",
    """CREATE TABLE search_messages (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL UNIQUE,
        conversation_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        sender_id TEXT NOT NULL,
        created_micros INTEGER NOT NULL
    )""",
    "CREATE INDEX search_messages_conversation ON search_messages (conversation_id, seq)",
    "CREATE VIRTUAL TABLE search_messages_fts USING fts5(body, tokenize='trigram')",
]

# name, nickname and body hold normalized text (already lower case), so the
# trigram indexes are on the columns themselves rather than on lower(...).
# A person is matched on name and nickname together: one generated column,
# one index, one similarity per row.
POSTGRES = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    """CREATE TABLE search_people (
        user_id UUID PRIMARY KEY,
        name TEXT NOT NULL,
        nickname TEXT NOT NULL,
        names TEXT GENERATED ALWAYS AS (name || ' ' || nickname) STORED,
        interests TEXT[] NOT NULL,
        visibility TEXT NOT NULL
    )""",
    "CREATE INDEX search_people_names_trgm ON search_people USING gin (names gin_trgm_ops)",
    "CREATE INDEX search_people_interests ON search_people USING gin (interests)",
    """CREATE TABLE search_messages (
        message_id UUID PRIMARY KEY,
        conversation_id UUID NOT NULL,
        seq BIGINT NOT NULL,
        sender_id UUID NOT NULL,
        body TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX search_messages_body_trgm ON search_messages USING gin (body gin_trgm_ops)",
    "CREATE INDEX search_messages_body_words ON search_messages"
    " USING gin (to_tsvector('simple', body))",
    "CREATE INDEX search_messages_conversation ON search_messages (conversation_id, seq)",
]

SQLITE_DROP = [
    "DROP TABLE search_messages_fts",
    "DROP TABLE search_messages",
    "DROP TABLE search_person_interests",
    "DROP TABLE search_people_fts",
    "DROP TABLE search_people",
]
# The extension stays: other objects may have come to use it.
POSTGRES_DROP = ["DROP TABLE search_messages", "DROP TABLE search_people"]


async def _run(schema_editor, statements):
    # One statement at a time through execute_query: executescript() would
    # commit the migration's transaction on SQLite.
    client = schema_editor.client
    for statement in statements:
        await client.execute_query(statement)


async def create_index_tables(apps, schema_editor):
    dialect = schema_editor.client.capabilities.dialect
    await _run(schema_editor, {"postgres": POSTGRES, "sqlite": SQLITE}[dialect])


async def drop_index_tables(apps, schema_editor):
    dialect = schema_editor.client.capabilities.dialect
    await _run(schema_editor, {"postgres": POSTGRES_DROP, "sqlite": SQLITE_DROP}[dialect])


class Migration(migrations.Migration):
    dependencies = [("parley", "0002_media")]

    initial = False

    operations = [
        ops.RunPython(create_index_tables, drop_index_tables),
    ]
