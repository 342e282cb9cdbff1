"""The official JavaScript Socket.IO client (socket.io-client v4) against a real node.

Each test runs ``tests/js/chat.mjs`` under Node next to Python SDK clients. The
script's dependencies come from ``npm ci --prefix tests/js``; without them these
tests fail (never skip).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import signed_in_client
from tests.support.server import ServerProcess

JS_DIR = Path(__file__).resolve().parents[1] / "js"
CHAT_SCRIPT = JS_DIR / "chat.mjs"
# chat.mjs gives up by itself after 15 s; this only guards against a wedged Node.
PROCESS_TIMEOUT = 25.0


def node_executable() -> str:
    """The ``node`` binary, once ``tests/js/node_modules`` holds socket.io-client; else fail."""
    if not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.fail(
            f"{JS_DIR / 'node_modules'} is missing or incomplete: "
            "run `npm ci --prefix tests/js` (from the project root) before these tests",
            pytrace=False,
        )
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "`node` is not on PATH: install Node.js 20+ to run the JS client tests", pytrace=False
        )
    return node


async def start_js(
    url: str, token: str, conversation_id: str, mode: str, transport: str = "websocket"
) -> asyncio.subprocess.Process:
    """Start chat.mjs in ``mode``; its stdout is one JSON object per line."""
    return await asyncio.create_subprocess_exec(
        node_executable(),
        str(CHAT_SCRIPT),
        url,
        token,
        conversation_id,
        mode,
        transport,
        cwd=JS_DIR,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@dataclass
class JsResult:
    returncode: int
    lines: list[dict[str, Any]]
    stderr: str


def parse_lines(stdout: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


async def finish_js(proc: asyncio.subprocess.Process) -> JsResult:
    """Wait for the script to exit (killing it if it hangs) and collect what it printed."""
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), PROCESS_TIMEOUT)
    except TimeoutError:
        proc.kill()
        stdout, stderr = await proc.communicate()
        pytest.fail(f"chat.mjs still running after {PROCESS_TIMEOUT}s:\n{stderr.decode()}")
    assert proc.returncode is not None
    return JsResult(proc.returncode, parse_lines(stdout), stderr.decode())


async def run_js(
    url: str, token: str, conversation_id: str, mode: str, transport: str = "websocket"
) -> JsResult:
    return await finish_js(await start_js(url, token, conversation_id, mode, transport))


async def read_line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    """The script's next stdout line as JSON; fails with its stderr if it ended instead."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), PROCESS_TIMEOUT)
    if not line:
        result = await finish_js(proc)
        pytest.fail(f"chat.mjs exited ({result.returncode}) early:\n{result.stderr}")
    parsed: dict[str, Any] = json.loads(line)
    return parsed


async def kill_if_running(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.communicate()


async def _js_sends_python_receives(node: ServerProcess, transport: str) -> None:
    alice = await signed_in_client(node, "alice", connect=False)
    bob = await signed_in_client(node, "bob")
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        result = await run_js(
            node.url, alice.access_token or "", conversation["id"], "send", transport
        )
        assert result.returncode == 0, result.stderr
        assert len(result.lines) == 3, result.lines
        connected, ack, echo = result.lines
        assert connected["connected"] is True and connected["transport"] == transport

        assert "error" not in ack, ack
        message = ack["data"]
        assert message["seq"] == 1
        assert message["sender_id"] == alice.user_id
        assert message["conversation_id"] == conversation["id"]
        assert message["client_msg_id"].startswith("js-")
        assert message["body"] == {"text": "hello from socket.io-client"}
        assert echo["id"] == message["id"], "the JS socket gets message:new for its own message"

        received = await bob.next_message()
        assert received["id"] == message["id"]
        assert received["seq"] == 1 and received["body"] == message["body"]
    finally:
        await alice.close()
        await bob.close()


async def test_js_client_sends_over_websocket(sqlite_node: ServerProcess) -> None:
    """socket.io-client on websocket sends, gets a seq-1 ack and its echo; Python B receives it."""
    await _js_sends_python_receives(sqlite_node, "websocket")


async def test_js_client_sends_over_long_polling(sqlite_node: ServerProcess) -> None:
    """The same exchange with socket.io-client held to HTTP long-polling."""
    await _js_sends_python_receives(sqlite_node, "polling")


async def test_js_client_receives_from_python_client(sqlite_node: ServerProcess) -> None:
    """A message a Python client sends reaches a connected socket.io-client as message:new."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    bob = await signed_in_client(sqlite_node, "bob")
    proc: asyncio.subprocess.Process | None = None
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        proc = await start_js(
            sqlite_node.url, alice.access_token or "", conversation["id"], "receive"
        )
        connected = await read_line(proc)
        assert connected["connected"] is True, connected

        ack = await bob.send_text(conversation["id"], "hello from python")
        received = await read_line(proc)
        assert received["id"] == ack["id"]
        assert received["seq"] == 1 and received["sender_id"] == bob.user_id
        assert received["body"] == {"text": "hello from python"}

        result = await finish_js(proc)
        assert result.returncode == 0, result.stderr
        assert result.lines == [], "nothing after the first message:new"
    finally:
        if proc is not None:
            await kill_if_running(proc)
        await alice.close()
        await bob.close()


async def test_js_client_bad_token_gets_connect_error(sqlite_node: ServerProcess) -> None:
    """A bad token is refused with a connect_error whose data is {code: invalid_token, message}."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    bob = await signed_in_client(sqlite_node, "bob", connect=False)
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        for transport in ("websocket", "polling"):
            result = await run_js(
                sqlite_node.url, "not.a.token", conversation["id"], "refused", transport
            )
            assert result.returncode == 0, result.stderr
            assert len(result.lines) == 1, result.lines
            refused = result.lines[0]
            assert refused["data"]["code"] == "invalid_token", (transport, refused)
            assert refused["data"]["message"], refused
            assert refused["message"] == refused["data"]["message"], refused
    finally:
        await alice.close()
        await bob.close()
