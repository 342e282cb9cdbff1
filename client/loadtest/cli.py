"""``parley loadtest``: N sessions against a Parley URL, in groups of M, at a send rate.

    parley loadtest http://127.0.0.1:8000 --sessions 1000 --group-size 10 --rate 200 \\
        --duration 60 --ramp 200 --processes 2 --json report.json --png report.png

Phases: sign in N users with Ethereum wallets (and register a device each for
E2EE), make groups of M, connect one socket per user at ``--ramp`` per second
through ``--processes`` generator processes, send ``--rate`` messages/s in
total for ``--duration`` s (each from a member to its own group, real
``parley-envelope-v1`` envelopes unless ``--plaintext``), keep receiving for up
to ``--drain`` s, then audit: every acked message must have reached every
member's socket, live or through sync after a reconnect. The report is printed
and written as JSON (and PNG). Exit status: 0, or 1 when an acked message was
lost (or nothing could be sent), 2 on bad arguments or a failed preparation.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from client.loadtest import prepare, report
from client.loadtest.generator import raise_fd_limit
from client.loadtest.pool import GeneratorPool
from client.loadtest.sockets import KINDS


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
        return value

    return parse


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be zero or more, not {text!r}")
    return value


def build_parser(prog: str = "parley loadtest") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Drive N concurrent sessions against a Parley server (or a load balancer "
        "in front of several): real wallet sign-in, real Socket.IO connections, real E2EE "
        "envelopes (or plaintext groups), groups of M, a target send rate, for a duration. "
        "Prints live progress and a report (throughput, send-to-receive latency, connect "
        "times, errors by kind, lost messages, reconnects); writes it as JSON and a PNG plot.",
        epilog="Exit status: 0 when every acked message reached every member; 1 when an "
        "acked message was lost or nothing could be sent; 2 on bad arguments or when "
        "preparation (sign-in, groups) failed. The server's per-user event limit "
        "(PARLEY_REALTIME_EVENTS_PER_SECOND) and sign-in limits apply to the load like to "
        "any client.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "url", help="base URL of the server or load balancer, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument(
        "-n",
        "--sessions",
        type=_positive(int),
        default=100,
        help="N: concurrent sessions (one user, one device, one socket each)",
    )
    parser.add_argument(
        "-m",
        "--group-size",
        type=_positive(int),
        default=10,
        help="M: members per group (consecutive sessions; the last group may be smaller); "
        "every message is delivered to its M members, the sender's own socket included",
    )
    parser.add_argument(
        "-r",
        "--rate",
        type=_positive(float),
        default=20.0,
        help="messages sent per second, in total (deliveries/s = rate x M)",
    )
    parser.add_argument(
        "-d",
        "--duration",
        type=_positive(float),
        default=30.0,
        help="seconds of sending",
    )
    parser.add_argument(
        "--ramp",
        type=_not_negative,
        default=100.0,
        help="new connections per second while connecting (0: as fast as possible)",
    )
    parser.add_argument(
        "-p",
        "--processes",
        type=_positive(int),
        default=min(4, os.cpu_count() or 1),
        help="generator processes (sessions are split between them)",
    )
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="plaintext groups and text messages instead of E2EE groups and encrypted "
        "envelopes (no encryption cost in the generator; the server indexes them)",
    )
    parser.add_argument(
        "--sign-in",
        choices=["wallet"],
        default="wallet",
        help="how sessions sign in: 'wallet' is Sign-In with Ethereum with a fresh "
        "eth-account key per session (works against any server; phone sign-in needs the "
        "codes from the server's console)",
    )
    parser.add_argument(
        "--sign-in-concurrency",
        type=_positive(int),
        default=32,
        help="sign-ins (and device registrations) in flight during preparation",
    )
    parser.add_argument(
        "--text-bytes",
        type=_positive(int),
        default=64,
        help="characters of text in each message (before encryption)",
    )
    parser.add_argument(
        "--drain",
        type=_not_negative,
        default=10.0,
        help="seconds, at most, to keep receiving after the last send (ends earlier once "
        "everything is acked, every session is connected again and nothing arrived for a "
        "second)",
    )
    parser.add_argument(
        "--decrypt-every",
        type=int,
        default=20,
        metavar="K",
        help="E2EE: verify and decrypt every K-th delivery in each generator process "
        "(0: none); a failure counts as an error",
    )
    parser.add_argument(
        "--no-sync",
        action="store_true",
        help="do not ask the server for missed messages (after a reconnect, a seq gap, or "
        "at the end): count only what arrived live; misses then show as lost",
    )
    parser.add_argument(
        "--client",
        choices=sorted(KINDS),
        default="raw",
        help="socket implementation in the generator: raw (hand-framed websockets, "
        "cheapest), ws (websockets sans-I/O), ws-asyncio (websockets asyncio)",
    )
    parser.add_argument(
        "--socketio-path", default="/socket.io/", help="Socket.IO path on the server"
    )
    parser.add_argument(
        "--connect-timeout",
        type=_positive(float),
        default=30.0,
        help="seconds for one connection attempt (websocket + Socket.IO connect)",
    )
    parser.add_argument(
        "--connect-concurrency",
        type=_positive(int),
        default=200,
        help="connection attempts in flight per generator process",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("loadtest-report.json"),
        metavar="PATH",
        help="where to write the JSON report",
    )
    parser.add_argument(
        "--png",
        type=Path,
        default=None,
        metavar="PATH",
        help="also draw latency over time and a latency histogram here (needs matplotlib: "
        "pip install 'parley[loadtest]')",
    )
    parser.add_argument(
        "--progress-interval",
        type=_positive(float),
        default=1.0,
        help="seconds between progress lines",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no live progress line")
    return parser


class ProgressLine:
    """The live line: connections, sent, delivered, errors, current p99."""

    def __init__(self, procs: int, sessions: int, quiet: bool, interval: float) -> None:
        self.latest: list[dict[str, Any]] = [{} for _ in range(procs)]
        self.recent: list[bytes] = [b"" for _ in range(procs)]
        self.sessions = sessions
        self.quiet = quiet
        self.interval = interval
        self.phase = "connecting"
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.samples: list[dict[str, Any]] = []

    def update(self, n: int, snapshot: dict[str, Any]) -> None:
        self.recent[n] = snapshot.pop("latency", b"")
        self.latest[n] = snapshot

    def line(self) -> dict[str, Any]:
        total: dict[str, Any] = {"phase": self.phase, "t": time.monotonic() - self.started}
        for key in ("connected", "sent", "acked", "delivered", "errors", "reconnects"):
            total[key] = sum(int(s.get(key, 0)) for s in self.latest)
        recent = sorted(report.floats(self.recent))
        total["p99_ms"] = 1000 * report.percentile(recent, 99) if recent else None
        return total

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            now = self.line()
            self.samples.append(
                {k: (round(v, 3) if isinstance(v, float) else v) for k, v in now.items()}
            )
            if self.quiet:
                continue
            p99 = f"{now['p99_ms']:.1f} ms" if now["p99_ms"] is not None else "-"
            text = (
                f"[{now['t']:6.1f}s] {now['phase']:<10} conns {now['connected']}/"
                f"{self.sessions}  sent {now['sent']:,}  acked {now['acked']:,}  "
                f"delivered {now['delivered']:,}  errors {now['errors']:,}  "
                f"reconnects {now['reconnects']:,}  p99 {p99}"
            )
            if self.tty:
                print("\r" + text.ljust(118), end="", file=sys.stderr, flush=True)
            else:
                print(text, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


async def run_loadtest(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare, connect, send, audit: the report (see ``client.loadtest.report``)."""
    started_at = time.time()
    e2ee = not args.plaintext
    quiet = args.quiet
    url = args.url.rstrip("/")
    procs = min(args.processes, args.sessions)
    raise_fd_limit()

    def prep_progress(what: str, done: int, total: int) -> None:
        if not quiet and (done == total or done % max(1, total // 10) == 0):
            _say(quiet, f"  {what}: {done}/{total}")

    _say(quiet, f"preparing {args.sessions} sessions on {url} ({'E2EE' if e2ee else 'plaintext'})")
    t0 = time.perf_counter()
    users = await prepare.sign_in(
        url,
        args.sessions,
        concurrency=args.sign_in_concurrency,
        devices=e2ee,
        progress=prep_progress,
    )
    sign_in_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    groups = await prepare.make_groups(
        url, users, args.group_size, encrypted=e2ee, progress=prep_progress
    )
    groups_s = time.perf_counter() - t0
    members: dict[str, int] = {}
    for u in users:
        members[u.conversation_id] = members.get(u.conversation_id, 0) + 1
    devices = prepare.directory(users) if e2ee else {}
    tag = "L" + secrets.token_hex(3) + "r"
    specs = []
    for p in range(procs):
        mine = users[p::procs]
        convs = {u.conversation_id for u in mine}
        specs.append(
            {
                "url": url,
                "kind": args.client,
                "socketio_path": args.socketio_path,
                "mode": "e2ee" if e2ee else "plaintext",
                "decrypt_every": args.decrypt_every,
                "gap_sync": not args.no_sync,
                "reconnect": True,
                "connect_timeout": args.connect_timeout,
                "progress": args.progress_interval,
                "tag": tag,
                "sessions": [u.spec() for u in mine],
                "directory": {c: devices[c] for c in convs if c in devices},
            }
        )
    progress = ProgressLine(procs, args.sessions, quiet, args.progress_interval)
    pool = GeneratorPool.spawn(specs, progress.update)
    ticker = asyncio.get_running_loop().create_task(progress.run())
    try:
        connected = await pool.connect(args.ramp, args.connect_concurrency)
        progress.phase = "sending"
        start_at = time.time() + 1.0
        runs = await pool.all(
            {
                "cmd": "run",
                "run": 1,
                "rate": args.rate / procs,
                "start_at": start_at,
                "duration": args.duration,
                "drain": args.drain,
                "text_bytes": args.text_bytes,
                "keep_state": True,
            }
        )
        progress.phase = "auditing"
        acked: dict[str, list[int]] = {}
        for r in runs:
            for conv, seqs in r["acked_seqs"].items():
                acked.setdefault(conv, []).extend(seqs)
        audits = await pool.all({"cmd": "audit", "acked": acked, "sync": not args.no_sync})
    finally:
        ticker.cancel()
        progress.done()
        await pool.close()
    finished_at = time.time()

    # Delivery numbers from the audits: they include what arrived after the run's reply.
    latency = report.floats([a["latency"] for a in audits])
    received_at = report.floats([a["received_at"] for a in audits])
    sent = sum(r["sent"] for r in runs)
    acked_total = sum(r["acked"] for r in runs)
    delivered_live = sum(a["delivered"] for a in audits)
    by_sync = sum(a["delivered_by_sync"] for a in audits)
    expected = sum(len(seqs) * members.get(conv, 0) for conv, seqs in acked.items())
    lost_deliveries = sum(a["lost_deliveries"] for a in audits)
    lost_messages: set[tuple[str, int]] = set()
    for a in audits:
        for conv, seqs in a["lost"].items():
            lost_messages.update((conv, s) for s in seqs)
    ack_errors = report.merge_counts([r["ack_errors"] for r in runs])
    errors = report.merge_counts(
        [a["errors"] for a in audits] + [{f"ack:{k}": v for k, v in ack_errors.items()}]
    )
    skipped = sum(r["skipped"] for r in runs)
    if skipped:
        errors["send_skipped_disconnected"] = skipped
    window = args.duration
    seconds = math.ceil(window + args.drain) + 2
    reconnect_ms = report.floats([a["reconnect_ms"] for a in audits])
    out: dict[str, Any] = {
        "format": report.FORMAT,
        "started_at": datetime.datetime.fromtimestamp(started_at, datetime.UTC).isoformat(),
        "finished_at": datetime.datetime.fromtimestamp(finished_at, datetime.UTC).isoformat(),
        "config": {
            "url": url,
            "sessions": args.sessions,
            "group_size": args.group_size,
            "groups": groups,
            "rate": args.rate,
            "duration_s": args.duration,
            "ramp_per_s": args.ramp,
            "processes": procs,
            "mode": "e2ee" if e2ee else "plaintext",
            "sign_in": args.sign_in,
            "client": args.client,
            "text_bytes": args.text_bytes,
            "drain_s": args.drain,
            "sync": not args.no_sync,
            "decrypt_every": args.decrypt_every if e2ee else 0,
        },
        "preparation": {
            "signed_in": len(users),
            "sign_in_s": round(sign_in_s, 2),
            "groups_s": round(groups_s, 2),
        },
        "connections": {
            "sessions": args.sessions,
            "connected": connected["connected"],
            "failed": connected["failed"],
            "connect_s": round(connected["seconds"], 2),
            "connect_ms": report.distribution_of_ms(report.floats(connected["connect_ms"])),
            "connected_at_end": sum(a["connected"] for a in audits),
            "disconnects": sum(a["disconnects"] for a in audits),
            "reconnects": sum(a["reconnects"] for a in audits),
            "reconnect_ms": report.distribution_of_ms(reconnect_ms),
        },
        "messages": {
            "sent": sent,
            "acked": acked_total,
            "ack_errors": sum(ack_errors.values()),
            "unacked": sum(r["unacked"] for r in runs),
            "resent": sum(r["resent"] for r in runs),
            "skipped": skipped,
            "expected_deliveries": expected,
            "delivered": delivered_live + by_sync,
            "delivered_live": delivered_live,
            "delivered_by_sync": by_sync,
            "recovered_at_audit": sum(a["recovered_at_audit"] for a in audits),
            "duplicates": sum(a["duplicates"] for a in audits),
            "decrypted": sum(a["decrypted"] for a in audits),
            "lost_deliveries": lost_deliveries,
            "lost_messages": len(lost_messages),
        },
        "throughput": {
            "window_s": window,
            "sent_per_s": round(sent / window, 2),
            "acked_per_s": round(acked_total / window, 2),
            "deliveries_per_s": round(sum(a["delivered_in_window"] for a in audits) / window, 2),
            "deliveries_total_per_s": round(delivered_live / window, 2),
        },
        "latency_ms": report.distribution_ms(latency),
        "ack_latency_ms": report.distribution_ms(report.floats([r["ack_latency"] for r in runs])),
        "sync_delay_ms": report.distribution_ms(report.floats([a["sync_delay"] for a in audits])),
        "errors": errors,
        "timeline": report.latency_timeline(latency, received_at, seconds),
        "progress": progress.samples,
        "generator_cpu_s": [round(r["cpu_seconds"], 2) for r in runs],
    }
    out["ok"] = bool(lost_deliveries == 0 and acked_total > 0)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    if args.png is not None:
        report.write_png(out, latency, args.png)
    return out


def summary(r: dict[str, Any]) -> str:
    def ms(d: dict[str, Any]) -> str:
        if not d["count"]:
            return "-"
        return f"p50 {d['p50']:.1f}  p95 {d['p95']:.1f}  p99 {d['p99']:.1f}  max {d['max']:.1f} ms"

    c, m, t = r["connections"], r["messages"], r["throughput"]
    lines = [
        f"connections  {c['connected']}/{c['sessions']} in {c['connect_s']} s "
        f"(connect {ms(c['connect_ms'])}); disconnects {c['disconnects']}, reconnects "
        f"{c['reconnects']} ({ms(c['reconnect_ms'])}); connected at the end "
        f"{c['connected_at_end']}",
        f"messages     sent {m['sent']:,}, acked {m['acked']:,}, ack errors {m['ack_errors']:,}, "
        f"resent {m['resent']:,}",
        f"deliveries   {m['delivered']:,} of {m['expected_deliveries']:,} expected "
        f"({m['delivered_by_sync']:,} by sync); lost {m['lost_deliveries']:,} deliveries "
        f"of {m['lost_messages']:,} acked messages",
        f"throughput   {t['deliveries_per_s']:,.0f} deliveries/s, {t['acked_per_s']:,.1f} "
        f"acked messages/s over {t['window_s']:g} s",
        f"latency      {ms(r['latency_ms'])} (send to receive)",
        f"ack latency  {ms(r['ack_latency_ms'])}",
        f"errors       {r['errors'] or 'none'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "parley loadtest") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        result = asyncio.run(run_loadtest(args))
    except prepare.PrepareError as exc:
        print(f"{prog}: preparation failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(summary(result))
    print(f"report: {args.json}" + (f", plot: {args.png}" if args.png else ""))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
