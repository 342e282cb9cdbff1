"""Parley's search index: people and plaintext messages (see storage/search/base.py)."""

from __future__ import annotations

from storage.search.base import (
    MessageDoc,
    MessageHit,
    PersonDoc,
    PersonHit,
    SearchIndex,
)

__all__ = [
    "MessageDoc",
    "MessageHit",
    "PersonDoc",
    "PersonHit",
    "SearchIndex",
    "build_search_index",
]


def build_search_index(database_is_sqlite: bool, opensearch_url: str | None) -> SearchIndex:
    """OpenSearch when a URL is configured, else the SQL backend of the database in use.

    The SQL backends use the database Tortoise has open (``storage.sql.connection()``)
    at call time, so this may be built before the database is opened.
    """
    if opensearch_url:
        # Imported here so that deployments without OpenSearch never load its client.
        from storage.search.opensearch import OpenSearchSearchIndex

        return OpenSearchSearchIndex.from_url(opensearch_url)
    if database_is_sqlite:
        from storage.search.sqlite import SqliteSearchIndex

        return SqliteSearchIndex()
    from storage.search.postgres import PostgresSearchIndex

    return PostgresSearchIndex()
