"""Several generator processes, each a slice of the sessions, driven together."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from client.loadtest.generator import worker_main

ProgressHandler = Callable[[int, dict[str, Any]], None]


class GeneratorProcess(Protocol):
    """A process that takes commands and answers each with one reply."""

    @property
    def pid(self) -> int: ...

    def send(self, cmd: dict[str, Any]) -> None: ...

    def recv(self) -> dict[str, Any]: ...

    def stop(self) -> None: ...


class PyGenerator:
    """One :mod:`client.loadtest.generator` process (multiprocessing, spawn), over a pipe."""

    def __init__(self, spec: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.proc = context.Process(target=worker_main, args=(child, spec), daemon=True)
        self.proc.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def send(self, cmd: dict[str, Any]) -> None:
        self.conn.send(cmd)

    def recv(self) -> dict[str, Any]:
        try:
            reply: dict[str, Any] = self.conn.recv()
        except EOFError:
            raise RuntimeError(
                f"load generator process {self.pid} exited (code {self.proc.exitcode})"
            ) from None
        return reply

    def stop(self) -> None:
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


class GeneratorPool:
    """Send a command to every process, gather the replies; progress messages
    (``{"progress": ...}``) go to ``on_progress`` as they come."""

    def __init__(
        self,
        procs: list[GeneratorProcess],
        on_progress: ProgressHandler | None = None,
    ) -> None:
        self.procs = procs
        self.on_progress = on_progress
        self._replies: list[queue.Queue[dict[str, Any] | BaseException]] = [
            queue.Queue() for _ in procs
        ]
        self._readers = [
            threading.Thread(target=self._read, args=(n,), daemon=True) for n in range(len(procs))
        ]
        for reader in self._readers:
            reader.start()

    @classmethod
    def spawn(
        cls, specs: list[dict[str, Any]], on_progress: ProgressHandler | None = None
    ) -> GeneratorPool:
        return cls([PyGenerator(spec) for spec in specs], on_progress)

    def _read(self, n: int) -> None:
        proc = self.procs[n]
        while True:
            try:
                message = proc.recv()
            except BaseException as exc:
                self._replies[n].put(exc)
                return
            if "progress" in message:
                if self.on_progress is not None:
                    self.on_progress(n, message["progress"])
                continue
            self._replies[n].put(message)
            if message.get("closed"):
                return

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def all(self, cmd: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send a command to every process (or one each) and gather the replies."""
        cmds = cmd if isinstance(cmd, list) else [cmd] * len(self.procs)
        for proc, c in zip(self.procs, cmds, strict=True):
            proc.send(c)
        loop = asyncio.get_running_loop()
        replies = await asyncio.gather(*(loop.run_in_executor(None, q.get) for q in self._replies))
        out: list[dict[str, Any]] = []
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
            out.append(reply)
        return out

    async def connect(self, ramp: float, concurrency: int) -> dict[str, Any]:
        per = ramp / len(self.procs) if ramp > 0 else 0.0
        replies = await self.all({"cmd": "connect", "ramp": per, "concurrency": concurrency})
        errors: dict[str, int] = {}
        for r in replies:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        return {
            "connected": sum(r["connected"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "errors": errors,
            "seconds": max(r["seconds"] for r in replies),
            "connect_ms": [r.get("connect_ms", b"") for r in replies],
        }

    async def close(self) -> None:
        try:
            await self.all({"cmd": "close"})
        finally:
            for p in self.procs:
                p.stop()
