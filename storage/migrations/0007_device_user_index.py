"""An index on ``devices.user_id``.

Every encrypted send reads the active devices of the conversation's members,
and ``GET /v1/keys`` those of the users asked for; without the index both
scan every device. Tortoise's AlterField creates it on PostgreSQL; its SQLite
schema editor does not (it rebuilds the table, copying every row, which is
quick at the sizes SQLite deployments have), so the same index is created
there by hand.
"""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops

INDEX = "idx_devices_user_id_415869"  # the name Tortoise gives it on PostgreSQL


async def index_on_sqlite(apps, schema_editor):
    if schema_editor.client.capabilities.dialect == "sqlite":
        await schema_editor.client.execute_script(
            f'CREATE INDEX IF NOT EXISTS "{INDEX}" ON "devices" ("user_id")'
        )


async def drop_on_sqlite(apps, schema_editor):
    if schema_editor.client.capabilities.dialect == "sqlite":
        await schema_editor.client.execute_script(f'DROP INDEX IF EXISTS "{INDEX}"')


class Migration(migrations.Migration):
    dependencies = [("parley", "0006_name_word_statistics")]

    initial = False

    operations = [
        ops.AlterField(
            model_name="Device",
            name="user",
            field=fields.ForeignKeyField(
                "parley.User",
                source_field="user_id",
                db_index=True,
                db_constraint=True,
                to_field="id",
                related_name="devices",
                on_delete=OnDelete.CASCADE,
            ),
        ),
        ops.RunPython(index_on_sqlite, drop_on_sqlite),
    ]
