"""The JSON-RPC client against a real chain (ganache) and against nodes that misbehave.

A misbehaving node is a real HTTP server on loopback that answers each
request with what the test scripts: garbage, errors, silence, a closed port.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from eth_account import Account

from server.tips.rpc import EthBadAnswerError, EthRpc, EthRpcError, EthUnavailableError
from tests.support.ganache import CHAIN_ID, ETH, Ganache
from tests.support.server import free_port


@pytest.fixture(scope="module")
def chain() -> Iterator[Ganache]:
    ganache = Ganache().start()
    yield ganache
    ganache.stop()


async def test_every_call_against_a_real_chain(chain: Ganache) -> None:
    sender, recipient = Account.create(), Account.create()
    chain.fund(sender.address, 2 * ETH)
    rpc = EthRpc(chain.url, timeout=5, retries=1)
    try:
        assert await rpc.chain_id() == CHAIN_ID
        head = await rpc.block_number()
        assert head == chain.block_number()
        assert await rpc.balance(sender.address) == 2 * ETH
        assert await rpc.transaction_count(sender.address) == 0
        assert await rpc.estimate_gas(sender.address, recipient.address, ETH) == 21000
        base_fee = await rpc.next_base_fee()
        priority = await rpc.max_priority_fee()
        assert base_fee > 0 and priority > 0
        signed = sender.sign_transaction(
            {
                "type": 2,
                "chainId": CHAIN_ID,
                "nonce": 0,
                "to": recipient.address,
                "value": ETH,
                "gas": 21000,
                "maxFeePerGas": 2 * base_fee + priority,
                "maxPriorityFeePerGas": priority,
            }
        )
        raw = "0x" + bytes(signed.raw_transaction).hex()
        tx_hash = await rpc.send_raw_transaction(raw)
        assert tx_hash == "0x" + bytes(signed.hash).hex()
        receipt = await rpc.receipt(tx_hash)
        assert receipt is not None and receipt.succeeded and receipt.block_number == head + 1
        found = await rpc.transaction(tx_hash)
        assert found is not None
        assert (found.sender, found.to, found.value, found.nonce, found.chain_id) == (
            sender.address.lower(),
            recipient.address.lower(),
            ETH,
            0,
            CHAIN_ID,
        )
        assert await rpc.balance(recipient.address) == ETH
        assert await rpc.transaction_count(sender.address, "latest") == 1
        assert await rpc.receipt("0x" + "00" * 32) is None
        assert await rpc.transaction("0x" + "00" * 32) is None
        # The node's own refusals come back as EthRpcError with its words.
        with pytest.raises(EthRpcError) as caught:
            await rpc.send_raw_transaction(raw.replace("0x02", "0x02ff", 1))
        assert caught.value.method == "eth_sendRawTransaction" and caught.value.rpc_message
    finally:
        await rpc.close()


Responder = Callable[[dict[str, object]], tuple[int, bytes] | None]


class OddNode:
    """An HTTP server on loopback answering JSON-RPC requests as ``respond`` says.

    ``respond`` gets the request and returns (status, body), or None to hang.
    """

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.requests: list[dict[str, object]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> OddNode:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode().split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                request = json.loads(await reader.readexactly(length))
                self.requests.append(request)
                answer = self.respond(request)
                if answer is None:
                    await asyncio.sleep(3600)
                    return
                status, body = answer
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _reply(result: object) -> Responder:
    def respond(request: dict[str, object]) -> tuple[int, bytes]:
        return 200, json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()

    return respond


@pytest.fixture
async def rpc_for() -> AsyncIterator[Callable[[str], EthRpc]]:
    made: list[EthRpc] = []

    def make(url: str) -> EthRpc:
        made.append(EthRpc(url, timeout=0.5, retries=2))
        return made[-1]

    yield make
    for rpc in made:
        await rpc.close()


@pytest.mark.parametrize(
    ("respond", "words"),
    [
        (lambda r: (200, b"hello"), "no JSON-RPC reply"),
        (lambda r: (200, b"[1, 2]"), "not JSON-RPC"),
        (
            lambda r: (200, json.dumps({"jsonrpc": "2.0", "id": 999, "result": "0x1"}).encode()),
            "not JSON-RPC",
        ),
        (lambda r: (200, json.dumps({"jsonrpc": "2.0", "id": r["id"]}).encode()), "no result"),
        (_reply("0xZZ"), "answered eth_chainId with '0xZZ'"),
        (_reply(1337), "answered eth_chainId with 1337"),
        (_reply("0x" + "f" * 65), "answered eth_chainId"),
        (lambda r: (200, b"x" * (2 * 1024 * 1024)), "too large"),
        (
            lambda r: (200, json.dumps({"jsonrpc": "2.0", "id": r["id"], "error": "bad"}).encode()),
            "malformed",
        ),
    ],
)
async def test_nonsense_from_the_node_is_a_bad_answer(
    respond: Responder, words: str, rpc_for: Callable[[str], EthRpc]
) -> None:
    async with OddNode(respond) as node:
        with pytest.raises(EthBadAnswerError) as caught:
            await rpc_for(node.url).chain_id()
    assert words in caught.value.message and caught.value.status == 502
    assert len(node.requests) == 1  # a bad answer is not retried


async def test_shapes_of_larger_answers_are_checked(rpc_for: Callable[[str], EthRpc]) -> None:
    answers: dict[str, object] = {
        "eth_feeHistory": {"baseFeePerGas": []},
        "eth_getTransactionReceipt": {"blockNumber": "0x5", "status": "yes"},
        "eth_getTransactionByHash": {"from": "nobody", "to": None, "value": "0x1", "nonce": "0x0"},
        "eth_sendRawTransaction": "0x1234",
    }

    def respond(request: dict[str, object]) -> tuple[int, bytes]:
        result = answers[str(request["method"])]
        return 200, json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()

    async with OddNode(respond) as node:
        rpc = rpc_for(node.url)
        for call in (
            rpc.next_base_fee(),
            rpc.receipt("0x" + "00" * 32),
            rpc.transaction("0x" + "00" * 32),
            rpc.send_raw_transaction("0x02"),
        ):
            with pytest.raises(EthBadAnswerError):
                await call


async def test_the_node_down_slow_or_failing_is_unavailable_after_retries(
    rpc_for: Callable[[str], EthRpc],
) -> None:
    with pytest.raises(EthUnavailableError, match="cannot reach the Ethereum node"):
        await rpc_for(f"http://127.0.0.1:{free_port()}").block_number()

    async with OddNode(lambda r: (500, b"oops")) as node:
        with pytest.raises(EthUnavailableError, match="HTTP 500") as caught:
            await rpc_for(node.url).block_number()
        assert len(node.requests) == 3 and caught.value.status == 503  # 1 + 2 retries

    async with OddNode(lambda r: None) as node:
        started = asyncio.get_running_loop().time()
        with pytest.raises(EthUnavailableError, match="did not answer eth_blockNumber in time"):
            await rpc_for(node.url).block_number()
        assert len(node.requests) == 3
        assert asyncio.get_running_loop().time() - started < 5


async def test_a_json_rpc_error_keeps_the_nodes_words(rpc_for: Callable[[str], EthRpc]) -> None:
    def respond(request: dict[str, object]) -> tuple[int, bytes]:
        error = {"code": -32000, "message": "insufficient funds for gas * price + value"}
        return 200, json.dumps({"jsonrpc": "2.0", "id": request["id"], "error": error}).encode()

    async with OddNode(respond) as node:
        with pytest.raises(EthRpcError) as caught:
            await rpc_for(node.url).send_raw_transaction("0x02")
    assert caught.value.rpc_code == -32000
    assert "insufficient funds for gas" in caught.value.message
    assert len(node.requests) == 1  # the node answered: no retry
