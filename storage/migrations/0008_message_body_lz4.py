"""Message bodies compressed with LZ4 instead of pglz on PostgreSQL.

An encrypted message's body is an envelope of several kilobytes (8.8 KB for
a group of 50), which PostgreSQL compresses before storing it out of line.
pglz spends about 0.3 ms of the server's CPU on each one and gains little on
base64 text; LZ4 takes a tenth of that and stores a fifth less (measured on
PostgreSQL 15: 0.54 against 0.26 ms of backend CPU per inserted envelope;
docs/DECISIONS.md 46). Only rows written after the change use it; reading
mixes both. PostgreSQL built without LZ4 (``default_toast_compression`` does
not offer it) keeps pglz. SQLite has no such setting.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

_SET = """
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_settings
        WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)
    ) THEN
        ALTER TABLE messages ALTER COLUMN body SET COMPRESSION lz4;
    END IF;
END
$$
"""


async def lz4_on_postgres(apps, schema_editor):
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_script(_SET)


async def default_on_postgres(apps, schema_editor):
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_script(
            "ALTER TABLE messages ALTER COLUMN body SET COMPRESSION default"
        )


class Migration(migrations.Migration):
    dependencies = [("parley", "0007_device_user_index")]

    initial = False

    operations = [ops.RunPython(lz4_on_postgres, default_on_postgres)]
