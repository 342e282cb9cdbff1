"""Persistence: Tortoise ORM models and migrations, and the key-value store."""
