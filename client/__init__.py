"""Async Python SDK for Parley: HTTP API, Socket.IO connection, reconnect."""

from client.sdk import ParleyApiError, ParleyClient

__all__ = ["ParleyApiError", "ParleyClient"]
