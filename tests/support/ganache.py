"""A real local Ethereum chain: ganache (npm, installed by `make test` in tests/js).

Started on a free loopback port with the accounts a test names funded, mining
a block for each transaction (so a tip is mined at once, and the test adds
blocks with ``mine()`` to confirm it). ``stop_mining``/``start_mining`` hold
transactions in the pool, for drop and restart scenarios.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from tests.support.server import ROOT, free_port

GANACHE_CLI = ROOT / "tests" / "js" / "node_modules" / "ganache" / "dist" / "node" / "cli.js"
CHAIN_ID = 1337
ETH = 10**18


class Ganache:
    def __init__(
        self,
        funded: dict[str, int] | None = None,
        *,
        chain_id: int = CHAIN_ID,
        db_path: Path | None = None,
    ) -> None:
        """``funded``: private key (0x hex) -> balance in wei, besides the faucet's.

        With ``db_path`` the chain (not the transaction pool) outlives a restart.
        """
        self.db_path = db_path
        self.faucet = Account.create()
        self.funded = {"0x" + bytes(self.faucet.key).hex(): 10**6 * ETH, **(funded or {})}
        self.chain_id = chain_id
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._ids = 0

    def start(self, timeout: float = 60.0) -> Ganache:
        node = shutil.which("node")
        if node is None or not GANACHE_CLI.exists():
            pytest.fail(
                "ganache is not installed: run `make test` (it runs `npm ci --prefix tests/js`); "
                "Node.js 20 is needed",
                pytrace=False,
            )
        args = [
            node,
            str(GANACHE_CLI),
            "--server.host=127.0.0.1",
            f"--server.port={self.port}",
            f"--chain.chainId={self.chain_id}",
            "--chain.hardfork=london",
            "--logging.quiet",
        ]
        args += [f"--wallet.accounts={key},{balance}" for key, balance in self.funded.items()]
        if self.db_path is not None:
            args.append(f"--database.dbPath={self.db_path}")
        log = Path(f"/tmp/ganache-{self.port}.log")
        with log.open("wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ganache exited at start:\n{log.read_text()[-2000:]}")
            try:
                if self.rpc("eth_chainId") == hex(self.chain_id):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"ganache did not start within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rpc(self, method: str, *params: Any) -> Any:
        self._ids += 1
        reply = httpx.post(
            self.url,
            json={"jsonrpc": "2.0", "id": self._ids, "method": method, "params": list(params)},
            timeout=10,
        ).json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.rpc("evm_mine")

    def stop_mining(self) -> None:
        self.rpc("miner_stop")

    def start_mining(self) -> None:
        self.rpc("miner_start")

    def fund(self, address: str, wei: int) -> None:
        """Send ``wei`` from the faucet (mined at once)."""
        nonce = int(self.rpc("eth_getTransactionCount", self.faucet.address, "pending"), 16)
        signed = self.faucet.sign_transaction(
            {
                "type": 2,
                "chainId": self.chain_id,
                "nonce": nonce,
                "to": address,
                "value": wei,
                "gas": 21000,
                "maxFeePerGas": 100 * 10**9,
                "maxPriorityFeePerGas": 10**9,
            }
        )
        self.rpc("eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())

    def balance(self, address: str) -> int:
        return int(self.rpc("eth_getBalance", address, "latest"), 16)

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)
