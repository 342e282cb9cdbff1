"""Test helpers: real server processes, real databases, phone numbers."""
