"""Statistics on the words of people's names, for the PostgreSQL search index.

ANALYZE (autovacuum's, or an explicit one) keeps the most common name words
with their frequencies in ``pg_stats_ext_exprs``; storage/search/postgres.py
reads them to tell a name that thousands of people share from a rare one. No
index and no column: nothing is written per row. SQLite has no such thing and
needs none.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

CREATE = (
    "CREATE STATISTICS IF NOT EXISTS search_people_words"
    " ON (string_to_array(names, ' ')) FROM search_people"
)
DROP = "DROP STATISTICS IF EXISTS search_people_words"


async def create_statistics(apps, schema_editor):
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_query(CREATE)
        await schema_editor.client.execute_query("ANALYZE search_people")


async def drop_statistics(apps, schema_editor):
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_query(DROP)


class Migration(migrations.Migration):
    dependencies = [("parley", "0005_tips")]

    initial = False

    operations = [
        ops.RunPython(create_statistics, drop_statistics),
    ]
