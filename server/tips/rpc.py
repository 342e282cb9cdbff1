"""A small Ethereum JSON-RPC client over httpx.

Only the calls tips need, each returning typed values. Transport failures
and HTTP 5xx are retried for idempotent calls (every read, and
``eth_sendRawTransaction``, which the node answers "already known" when it
has the transaction). The node's answers are checked: a reply that is not
JSON-RPC, or a quantity that is not hex, is an ``EthBadAnswerError`` rather
than a crash further down.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from config.errors import ParleyError, UnavailableError

log = logging.getLogger(__name__)

_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_DATA = re.compile(r"0x[0-9a-fA-F]*")
# A JSON-RPC reply for these calls is small; a node that sends megabytes is broken.
MAX_REPLY_BYTES = 1024 * 1024


class EthUnavailableError(UnavailableError):
    code = "eth_node_unavailable"


class EthBadAnswerError(ParleyError):
    status = 502
    code = "eth_node_bad_answer"


class EthRpcError(ParleyError):
    """The node answered with a JSON-RPC error object.

    Callers turn the refusals that are about the user's request (a gas estimate, a
    broadcast) into their own 4xx codes; any other reaches the client as the
    gateway's failure it is.
    """

    status = 502
    code = "eth_rpc_error"

    def __init__(self, method: str, rpc_code: int, rpc_message: str) -> None:
        super().__init__(f"the Ethereum node refused {method}: {rpc_message}")
        self.method = method
        self.rpc_code = rpc_code
        self.rpc_message = rpc_message


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block_number: int
    succeeded: bool


@dataclass(frozen=True)
class ChainTransaction:
    """A transaction as the node reports it (eth_getTransactionByHash)."""

    tx_hash: str
    sender: str
    to: str
    value: int
    nonce: int
    chain_id: int | None
    data: bytes
    block_number: int | None


def quantity(value: Any, what: str) -> int:
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise EthBadAnswerError(f"the Ethereum node answered {what} with {value!r:.80}")
    return int(value, 16)


def _data(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not _DATA.fullmatch(value) or len(value) % 2:
        raise EthBadAnswerError(f"the Ethereum node answered {what} with {value!r:.80}")
    return bytes.fromhex(value[2:])


def _address(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
        raise EthBadAnswerError(f"the Ethereum node answered {what} with {value!r:.80}")
    return value.lower()


class EthRpc:
    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        retries: int,
        transport: httpx.AsyncBaseTransport | None = None,
        observe: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self._url = url
        self._retries = retries
        self._ids = itertools.count(1)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={"content-type": "application/json"},
            transport=transport,
        )
        self._observe = observe

    @property
    def url(self) -> str:
        return self._url

    async def close(self) -> None:
        await self._client.aclose()

    async def call(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; idempotent, so retried on transport failures."""
        attempt = 0
        while True:
            try:
                return await self._call_once(method, params)
            except EthUnavailableError:
                if attempt >= self._retries:
                    raise
                attempt += 1
                await asyncio.sleep(0.2 * 2**attempt)

    async def _call_once(self, method: str, params: list[Any]) -> Any:
        request_id = next(self._ids)
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        )
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await self._exchange(method, body, request_id)
        except EthUnavailableError:
            outcome = "unavailable"
            raise
        except EthBadAnswerError:
            outcome = "bad_answer"
            raise
        except EthRpcError:
            outcome = "error"
            raise
        finally:
            if self._observe is not None:
                self._observe(method, outcome, time.perf_counter() - started)

    async def _exchange(self, method: str, body: bytes, request_id: int) -> Any:
        try:
            response = await self._client.post(self._url, content=body)
            content = response.content
        except httpx.TimeoutException:
            raise EthUnavailableError(
                f"the Ethereum node did not answer {method} in time"
            ) from None
        except httpx.HTTPError as exc:
            raise EthUnavailableError(
                f"cannot reach the Ethereum node: {type(exc).__name__}"
            ) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise EthUnavailableError(
                f"the Ethereum node answered {method} with HTTP {response.status_code}"
            )
        if len(content) > MAX_REPLY_BYTES:
            raise EthBadAnswerError(f"the Ethereum node's answer to {method} is too large")
        try:
            reply = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise EthBadAnswerError(
                f"the Ethereum node answered {method} with HTTP {response.status_code} "
                "and no JSON-RPC reply"
            ) from None
        if not isinstance(reply, dict) or reply.get("id") != request_id:
            raise EthBadAnswerError(f"the Ethereum node's answer to {method} is not JSON-RPC")
        error = reply.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise EthBadAnswerError(f"the Ethereum node's error for {method} is malformed")
            code = error.get("code")
            message = str(error.get("message", ""))[:300]
            raise EthRpcError(method, code if isinstance(code, int) else 0, message)
        if "result" not in reply:
            raise EthBadAnswerError(f"the Ethereum node's answer to {method} has no result")
        return reply["result"]

    # -- the calls --------------------------------------------------------------

    async def chain_id(self) -> int:
        return quantity(await self.call("eth_chainId", []), "eth_chainId")

    async def block_number(self) -> int:
        return quantity(await self.call("eth_blockNumber", []), "eth_blockNumber")

    async def balance(self, address: str, block: str = "latest") -> int:
        return quantity(await self.call("eth_getBalance", [address, block]), "eth_getBalance")

    async def transaction_count(self, address: str, block: str = "pending") -> int:
        return quantity(
            await self.call("eth_getTransactionCount", [address, block]),
            "eth_getTransactionCount",
        )

    async def estimate_gas(self, sender: str, to: str, value: int) -> int:
        tx = {"from": sender, "to": to, "value": hex(value)}
        return quantity(await self.call("eth_estimateGas", [tx]), "eth_estimateGas")

    async def next_base_fee(self) -> int:
        """The base fee of the next block: the last entry of eth_feeHistory."""
        history = await self.call("eth_feeHistory", ["0x1", "latest", []])
        fees = history.get("baseFeePerGas") if isinstance(history, dict) else None
        if not isinstance(fees, list) or not fees:
            raise EthBadAnswerError("the Ethereum node's eth_feeHistory has no baseFeePerGas")
        return quantity(fees[-1], "eth_feeHistory")

    async def max_priority_fee(self) -> int:
        return quantity(await self.call("eth_maxPriorityFeePerGas", []), "eth_maxPriorityFeePerGas")

    async def send_raw_transaction(self, raw: str) -> str:
        result = await self.call("eth_sendRawTransaction", [raw])
        if not isinstance(result, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", result):
            raise EthBadAnswerError(
                f"the Ethereum node answered eth_sendRawTransaction with {result!r:.80}"
            )
        return result.lower()

    async def receipt(self, tx_hash: str) -> Receipt | None:
        result = await self.call("eth_getTransactionReceipt", [tx_hash])
        if result is None:
            return None
        if not isinstance(result, dict):
            raise EthBadAnswerError("the Ethereum node's receipt is not an object")
        block = result.get("blockNumber")
        if block is None:  # some nodes answer pending transactions with a receipt stub
            return None
        status = quantity(result.get("status"), "the receipt status")
        return Receipt(
            tx_hash=tx_hash,
            block_number=quantity(block, "the receipt block number"),
            succeeded=status == 1,
        )

    async def transaction(self, tx_hash: str) -> ChainTransaction | None:
        result = await self.call("eth_getTransactionByHash", [tx_hash])
        if result is None:
            return None
        if not isinstance(result, dict):
            raise EthBadAnswerError("the Ethereum node's transaction is not an object")
        chain_id = result.get("chainId")
        block = result.get("blockNumber")
        return ChainTransaction(
            tx_hash=tx_hash,
            sender=_address(result.get("from"), "the transaction sender"),
            to=_address(result.get("to"), "the transaction recipient"),
            value=quantity(result.get("value"), "the transaction value"),
            nonce=quantity(result.get("nonce"), "the transaction nonce"),
            chain_id=quantity(chain_id, "the transaction chain id") if chain_id else None,
            data=_data(result.get("input", "0x"), "the transaction input"),
            block_number=quantity(block, "the transaction block") if block else None,
        )
