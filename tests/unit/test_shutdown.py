"""A shutdown that does not finish in time ends the process anyway."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from tests.support.server import ROOT

_STUCK = """
import asyncio
from server.drain import _exit_if_stuck

async def main():
    _exit_if_stuck(asyncio.get_running_loop(), 0.5)
    await asyncio.Event().wait()  # a shutdown step that never finishes

asyncio.run(main())
"""


def test_stuck_shutdown_exits_saying_what_was_running() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _STUCK], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert time.monotonic() - started < 10
    assert "shutdown not finished 0.5 s after SIGTERM" in done.stderr
    # The stuck task's stack (asyncio's format; the threads' come after it, faulthandler's).
    assert re.search(r'Stack for <Task .*\n  File "<string>", line \d+, in main', done.stderr)
