"""Stream an upload to a temporary file, never holding more than a little of it in memory."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from config.errors import PayloadTooLargeError

# Writes are batched so a thread hop carries ~1 MiB, not every 64 KiB chunk.
_FLUSH_BYTES = 1024 * 1024
HEAD_BYTES = 64


@dataclass(frozen=True, slots=True)
class Spooled:
    path: Path
    size: int
    head: bytes  # the first bytes, for sniffing the type

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


async def spool(chunks: AsyncIterator[bytes], directory: Path, limit: int) -> Spooled:
    """Write ``chunks`` to a new 0600 file in ``directory``; 413 past ``limit`` bytes."""
    await anyio.to_thread.run_sync(lambda: directory.mkdir(mode=0o700, parents=True, exist_ok=True))
    fd, name = await anyio.to_thread.run_sync(
        lambda: tempfile.mkstemp(prefix="upload-", dir=directory)
    )
    path = Path(name)
    size = 0
    head = b""
    pending: list[bytes] = []
    pending_bytes = 0
    try:
        with os.fdopen(fd, "wb") as file:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(
                        f"upload is larger than the limit of {limit:,} bytes",
                        code="upload_too_large",
                    )
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= _FLUSH_BYTES:
                    batch, pending, pending_bytes = pending, [], 0
                    await anyio.to_thread.run_sync(file.writelines, batch)
            if pending:
                await anyio.to_thread.run_sync(file.writelines, pending)
    except BaseException:
        Spooled(path, size, head).remove()
        raise
    return Spooled(path, size, head)
