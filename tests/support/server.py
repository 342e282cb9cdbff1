"""A real Parley node: `python -m server.cli serve` in a subprocess on a free port.

The node's JSON log is read line by line on a thread, so tests can wait for a
log record (the console SMS provider writes sign-in codes there, as it does for
a developer running `make run`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
# The token of an e-mailed link: secrets.token_urlsafe(32), 43 URL-safe characters.
_LINK_TOKEN = re.compile(r"[?&#]token=([A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self, env: dict[str, str], *, name: str = "node") -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.records: list[dict[str, Any]] = []
        self.raw_lines: list[str] = []
        self._lock = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None
        self._sms_seen: dict[str, int] = {}
        self._email_seen: dict[str, int] = {}

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        env.update(self.env)
        env["PARLEY_SERVER_PORT"] = str(self.port)
        env.setdefault("PARLEY_SERVER_HOST", "127.0.0.1")
        env.setdefault("PARLEY_LOG_FORMAT", "json")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            # Its own process group: stopping the node stops every worker of
            # `--workers N`, even one that outlived its supervisor.
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()  # joins the reader and closes the pipe
                raise RuntimeError(
                    f"{self.name} exited at start:\n" + "\n".join(self.raw_lines[-40:])
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.name} not ready in {timeout}s:\n" + "\n".join(self.raw_lines[-40:])
        )

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.raw_lines.append(line.rstrip())
                with contextlib.suppress(ValueError):  # a non-JSON line (a crash trace)
                    self.records.append(json.loads(line))
                self._lock.notify_all()

    def wait_for_record(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            seen = 0
            while True:
                for record in self.records[seen:]:
                    if predicate(record):
                        return record
                seen = len(self.records)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching log record on {self.name}")
                self._lock.wait(left)

    def next_sms_code(self, phone: str, timeout: float = 10.0) -> str:
        """The next code the console SMS provider 'sent' to ``phone`` (each is returned once)."""
        wanted = self._sms_seen.get(phone, 0) + 1
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                texts = [str(r["sms_text"]) for r in self.records if r.get("sms_to") == phone]
                if len(texts) >= wanted:
                    self._sms_seen[phone] = wanted
                    return texts[wanted - 1].split("code is ", 1)[1][:6]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no SMS to {phone} on {self.name}")
                self._lock.wait(left)

    def next_email(self, to: str, timeout: float = 10.0) -> dict[str, str]:
        """The next mail the console e-mail provider 'sent' to ``to`` (each is returned once).

        Returns ``{"subject": ..., "text": ...}``; ``to`` is matched exactly, as logged
        (the address's display form).
        """
        wanted = self._email_seen.get(to, 0) + 1
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                mails = [r for r in self.records if r.get("email_to") == to]
                if len(mails) >= wanted:
                    self._email_seen[to] = wanted
                    mail = mails[wanted - 1]
                    return {"subject": str(mail["email_subject"]), "text": str(mail["email_text"])}
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no e-mail to {to} on {self.name}")
                self._lock.wait(left)

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(self.raw_lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                self._signal_group(sig)
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(5)
        # A worker still running once its supervisor is gone would hold the log
        # pipe open (and the reader thread with it) for ever.
        self._signal_group(signal.SIGKILL)
        self._reader.join(5)
        if self.proc.stderr is not None and not self._reader.is_alive():
            self.proc.stderr.close()

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def link_token(text: str) -> str:
    """The ``token=`` value of the (first) link in a mail's text."""
    match = _LINK_TOKEN.search(text)
    if match is None:
        raise ValueError(f"no link token in mail text: {text!r}")
    return match.group(1)
