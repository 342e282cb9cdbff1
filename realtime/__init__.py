"""The socket hub: Socket.IO server, connection auth, per-user rooms, cross-node emit.

It knows nothing of chats or contacts: domains register their events with it.
"""
