"""Sign-ins per second on one node: phone verify, wallet verify, refresh rotation.

    .venv/bin/python -m bench.auth.run [--workers 2] [--runs 5] [--requests 2000]

Starts a real node (`parley serve`) on PostgreSQL + Redis of this machine, with
its own database, prepares everything that is not being measured (accounts,
signed wallet challenges, sign-in codes read from the node's log), then fires
the measured requests from this process over keep-alive HTTP connections and
reports the median of several runs. Writes bench/results/auth.json; the table
in docs/BENCHMARKS.md comes from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as redis_asyncio
from eth_account import Account
from eth_account.messages import encode_defunct

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.phones import fresh_phone  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

PG_ADMIN = os.environ.get("PARLEY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/13"
TARGET_PER_SECOND = 1000
TARGETED = {"wallet_verify", "refresh_rotation"}


async def fire(
    session: aiohttp.ClientSession, requests: list[tuple[str, dict[str, Any]]], concurrency: int
) -> tuple[float, list[dict[str, Any]], int]:
    """POST every request with ``concurrency`` in flight; (seconds, bodies, errors)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(requests)):
        queue.put_nowait(i)
    results: list[dict[str, Any]] = [{} for _ in requests]
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while not queue.empty():
            i = queue.get_nowait()
            path, body = requests[i]
            async with session.post(path, json=body) as response:
                data = await response.json()
                if response.status != 200:
                    errors += 1
                results[i] = data

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, results, errors


async def prepare_wallets(
    session: aiohttp.ClientSession, n: int, accounts: list[Any] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Signed challenges for ``accounts`` (new wallets when not given), ready to verify."""
    accounts = accounts if accounts is not None else [Account.create() for _ in range(n)]
    requests = []
    for account in accounts:
        async with session.post(
            "/v1/auth/wallet/challenge", json={"chain": "ethereum", "address": account.address}
        ) as response:
            message = (await response.json())["message"]
        signature = account.sign_message(encode_defunct(text=message)).signature.hex()
        requests.append(
            (
                "/v1/auth/wallet/verify",
                {"message": message, "signature": "0x" + signature.removeprefix("0x")},
            )
        )
    return requests


async def prepare_phones(
    session: aiohttp.ClientSession, node: ServerProcess, n: int
) -> list[tuple[str, dict[str, Any]]]:
    starts = []
    for _ in range(n):
        async with session.post("/v1/auth/phone/start", json={"phone": fresh_phone()}) as response:
            starts.append(await response.json())
    requests = []
    for start in starts:
        code = await asyncio.to_thread(node.next_sms_code, start["phone"], 30)
        requests.append(
            ("/v1/auth/phone/verify", {"request_id": start["request_id"], "code": code})
        )
    return requests


async def measure(
    name: str,
    prepare: Callable[[], Awaitable[list[tuple[str, dict[str, Any]]]]],
    session: aiohttp.ClientSession,
    runs: int,
    concurrency: int,
) -> dict[str, Any]:
    rates = []
    for run in range(runs):
        requests = await prepare()
        seconds, _, errors = await fire(session, requests, concurrency)
        rate = len(requests) / seconds
        rates.append(rate)
        print(f"  {name} run {run + 1}: {rate:,.0f}/s ", end="")
        print(f"({len(requests)} in {seconds:.2f} s, {errors} errors)")
        if errors:
            raise SystemExit(f"{name}: {errors} requests failed; the measurement is void")
    return {"median_per_s": statistics.median(rates), "runs_per_s": rates}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", type=int, default=2, help="server worker processes (default 2)"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario (median reported)")
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per run")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    args = parser.parse_args()

    name = f"parley_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    redis = redis_asyncio.Redis.from_url(REDIS_URL)
    await redis.flushdb()
    await redis.aclose()
    keys = Path(f"/tmp/{name}-keys")
    env = {
        "PARLEY_DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + "/" + name,
        "PARLEY_DATABASE_AUTO_MIGRATE": "true",
        "PARLEY_DATABASE_POOL_MAX_SIZE": "20",
        "PARLEY_REDIS_URL": REDIS_URL,
        "PARLEY_AUTH_KEYS_DIR": str(keys),
        "PARLEY_SERVER_WORKERS": str(args.workers),
        # The load comes from one address and many numbers; lift the abuse limits.
        "PARLEY_AUTH_OTP_PER_IP_PER_HOUR": "100000",
        "PARLEY_AUTH_OTP_RESEND_COOLDOWN": "0",
        "PARLEY_LOG_LEVEL": "WARNING",
    }
    node = ServerProcess(env, name="bench").start(timeout=60)
    results: dict[str, Any] = {}
    try:
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(node.url, connector=connector) as session:
            n = args.requests
            print(f"wallet sign-in, returning (EIP-4361 + EIP-191), {args.workers} workers")
            wallets = [Account.create() for _ in range(n)]
            await fire(session, await prepare_wallets(session, n, wallets), args.concurrency)
            results["wallet_verify"] = await measure(
                "wallet",
                lambda: prepare_wallets(session, n, wallets),
                session,
                args.runs,
                args.concurrency,
            )
            print("wallet sign-up (the first sign-in creates the account)")
            results["wallet_sign_up"] = await measure(
                "wallet-new",
                lambda: prepare_wallets(session, n),
                session,
                args.runs,
                args.concurrency,
            )

            async def refresh_requests() -> list[tuple[str, dict[str, Any]]]:
                _, pairs, _ = await fire(
                    session, await prepare_wallets(session, n), args.concurrency
                )
                return [("/v1/auth/refresh", {"refresh_token": p["refresh_token"]}) for p in pairs]

            print("refresh rotation")
            results["refresh_rotation"] = await measure(
                "refresh", refresh_requests, session, args.runs, args.concurrency
            )
            print("phone verify")
            results["phone_verify"] = await measure(
                "phone",
                lambda: prepare_phones(session, node, n),
                session,
                args.runs,
                args.concurrency,
            )
    finally:
        node.stop()
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "workers": args.workers,
        "requests_per_run": args.requests,
        "concurrency": args.concurrency,
        "target_per_s": TARGET_PER_SECOND,
        "results": results,
    }
    out = ROOT / "bench" / "results" / "auth.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print("\n| scenario | median sign-ins/s | target |")
    print("| --- | ---: | ---: |")
    for key, value in results.items():
        target = f"{TARGET_PER_SECOND:,}" if key in TARGETED else "-"
        print(f"| {key} | {value['median_per_s']:,.0f} | {target} |")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    asyncio.run(main())
