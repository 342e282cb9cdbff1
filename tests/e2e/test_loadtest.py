"""`parley loadtest` against real nodes: the report adds up, nothing acked is lost."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.server import ROOT, ServerProcess

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def loadtest(url: str, tmp: Path, *extra: str, timeout: float = 120) -> tuple[int, dict[str, Any]]:
    """Run the command as an operator would; its exit status and JSON report."""
    report = tmp / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "loadtest",
            url,
            "--json",
            str(report),
            "--png",
            str(tmp / "report.png"),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert report.exists(), done.stderr[-3000:]
    return done.returncode, json.loads(report.read_text())


def check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, chunk = struct.unpack(">I4s", data[8:16])
    assert chunk == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 300
    assert data[-8:-4] == b"IEND"


def check_consistent(r: dict[str, Any], sessions: int, group: int) -> None:
    m, c = r["messages"], r["connections"]
    assert r["format"] == "parley-loadtest/1"
    assert c["connected"] == sessions and c["failed"] == 0
    assert c["connected_at_end"] == sessions
    assert m["sent"] > 0
    assert m["acked"] + m["ack_errors"] + m["unacked"] == m["sent"]
    assert m["ack_errors"] == 0 and m["unacked"] == 0
    # Every acked message reaches every member socket (the sender's own included).
    assert m["expected_deliveries"] == m["acked"] * group
    assert m["delivered"] == m["delivered_live"] + m["delivered_by_sync"]
    assert m["delivered"] == m["expected_deliveries"]
    assert m["lost_deliveries"] == 0 and m["lost_messages"] == 0
    assert m["duplicates"] == 0
    assert r["latency_ms"]["count"] == m["delivered_live"]
    assert sum(t["deliveries"] for t in r["timeline"]) == m["delivered_live"]
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert r["ok"] is True


def test_e2ee_loadtest_report_adds_up(
    cluster: tuple[ServerProcess, ServerProcess], tmp_path: Path
) -> None:
    """An E2EE run through PostgreSQL and Redis: counts agree, nothing lost, envelopes open."""
    node, _ = cluster
    code, r = loadtest(
        node.url, tmp_path, "-n", "12", "-m", "4", "-r", "12", "-d", "3", "-p", "2",
        "--decrypt-every", "3", "--drain", "5", "-q",
    )  # fmt: skip
    assert code == 0, {k: r[k] for k in ("messages", "connections", "errors")}
    check_consistent(r, sessions=12, group=4)
    assert r["config"]["mode"] == "e2ee" and r["config"]["groups"] == 3
    assert r["messages"]["sent"] == 36  # 12 messages/s for 3 s, none skipped
    assert r["messages"]["decrypted"] > 0
    assert not any(k.startswith("decrypt_failed") for k in r["errors"])
    assert r["connections"]["reconnects"] == 0
    check_png(tmp_path / "report.png")


def test_loadtest_reconnects_and_loses_nothing_across_a_node_restart(
    tmp_path: Path,
) -> None:
    """The node is killed mid-run and restarted: every session reconnects, sync fills the gap."""
    node = ServerProcess(
        {
            "PARLEY_DATABASE_URL": f"sqlite://{tmp_path}/parley.sqlite3",
            "PARLEY_AUTH_KEYS_DIR": str(tmp_path / "keys"),
            "PARLEY_MEDIA_DIR": str(tmp_path / "media"),
            "PARLEY_LOG_LEVEL": "WARNING",
        },
        name="loadtest-node",
    ).start()
    report = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "server.cli", "loadtest", node.url, "-n", "16", "-m", "4",
        "-r", "16", "-d", "12", "-p", "2", "--plaintext", "--drain", "40",
        "--json", str(report), "--png", str(tmp_path / "report.png"),
    ]  # fmt: skip
    restarted = False
    try:
        with subprocess.Popen(
            command, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        ) as run:
            assert run.stderr is not None
            for line in run.stderr:
                # The progress line (once a second): kill -9 once 32 messages are out,
                # then start the node again on the same port and database.
                sent = re.search(r" sending .* sent ([\d,]+)", line)
                if not restarted and sent and int(sent[1].replace(",", "")) >= 32:
                    assert node.proc is not None
                    node.proc.kill()
                    node.proc.wait()
                    node._reader.join(5)  # the old log pipe: read to its end, then closed
                    assert node.proc.stderr is not None
                    node.proc.stderr.close()
                    node.start()
                    restarted = True
            code = run.wait(120)
    finally:
        node.stop()
    assert restarted
    r = json.loads(report.read_text())
    assert code == 0, {k: r[k] for k in ("messages", "connections", "errors")}
    check_consistent(r, sessions=16, group=4)
    assert r["config"]["mode"] == "plaintext"
    c = r["connections"]
    assert c["disconnects"] >= 16 and c["reconnects"] >= 16
    assert c["reconnect_ms"]["max"] < 10_000
    assert r["errors"]["disconnected"] >= 16
    check_png(tmp_path / "report.png")


def test_loadtest_help_documents_every_option_and_refuses_bad_ones() -> None:
    """--help names every option; a bad value is refused with exit status 2 and a reason."""
    from client.loadtest.cli import build_parser

    shown = subprocess.run(
        [sys.executable, "-m", "server.cli", "loadtest", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for action in build_parser()._actions:
        for option in action.option_strings:
            assert option in shown
        assert action.help, action.dest
    assert "Exit status" in shown
    bad = subprocess.run(
        [sys.executable, "-m", "server.cli", "loadtest", "http://127.0.0.1:9", "-n", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "--sessions: must be a positive number" in bad.stderr
