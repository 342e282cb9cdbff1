"""Operational surface of a real node: health, readiness, metrics, OpenAPI, JWKS, request ids."""

from __future__ import annotations

import base64
import json

import httpx

from tests.support.clients import signed_in_client
from tests.support.server import ServerProcess


async def test_health_and_readiness(sqlite_node: ServerProcess) -> None:
    """/healthz answers ok; /readyz reports the database and kv checks."""
    async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "checks": {"database": "ok", "kv": "ok", "media": "ok", "search": "ok"},
        }


async def test_metrics_count_sockets_events_and_requests(sqlite_node: ServerProcess) -> None:
    """/metrics exposes connected sockets, socket events and HTTP requests with latency."""
    alice = await signed_in_client(sqlite_node, "alice")
    bob = await signed_in_client(sqlite_node, "bob")
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        await alice.send_text(conversation["id"], "count me")
        async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
            text = (await http.get("/metrics")).text
        gauge = [line for line in text.splitlines() if line.startswith("parley_sockets_connected ")]
        assert gauge and float(gauge[0].split()[1]) >= 2
        assert 'parley_socket_events_in_total{event="message:send",outcome="ok"}' in text
        assert 'parley_socket_events_out_total{event="message:new"}' in text
        assert (
            'parley_http_requests_total{method="POST",route="/v1/conversations/direct",status="200"}'
            in text
        )
        assert "parley_http_request_seconds_bucket" in text
        # The process itself: CPU and memory for capacity planning.
        values = {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith(("process_", "python_info", "parley_gc_pause_seconds_count"))
        }
        assert values["process_resident_memory_bytes"] > 50e6
        assert values["process_cpu_seconds_total"] > 0
        assert values["process_open_fds"] > 0
        assert any(name.startswith("python_info{") for name in values)
    finally:
        await alice.close()
        await bob.close()


async def test_openapi_and_docs_are_served(sqlite_node: ServerProcess) -> None:
    """The OpenAPI document lists the API and /docs serves the reference page."""
    async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
        spec = (await http.get("/openapi.json")).json()
        for path in (
            "/v1/auth/phone/start",
            "/v1/auth/phone/verify",
            "/v1/conversations/direct",
            "/v1/conversations/{conversation_id}/messages",
            "/healthz",
            "/readyz",
        ):
            assert path in spec["paths"], path
        docs = await http.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_openapi_describes_the_errors_as_they_are_sent(sqlite_node: ServerProcess) -> None:
    """Every documented failure is the {"error": {code, message}} envelope a client gets."""
    async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
        spec = (await http.get("/openapi.json")).json()
        refused = await http.post("/v1/auth/email/login", json={"identifier": 5})
        unauthenticated = await http.get("/v1/media/usage")
    # The documented envelope is the one the server sends, field for field.
    envelope = spec["components"]["schemas"]["Error"]
    for body in (refused.json(), unauthenticated.json()):
        assert set(body) == set(envelope["properties"]) == set(envelope["required"])
        assert set(body["error"]) == set(envelope["properties"]["error"]["properties"])
    assert "HTTPValidationError" not in spec["components"]["schemas"]

    operations = [(path, op) for path, ops in spec["paths"].items() for op in ops.values()]
    ids = [op["operationId"] for _, op in operations]
    assert len(ids) == len(set(ids)), "operation ids repeat"
    for path, op in operations:
        responses = op["responses"]
        for status, response in responses.items():
            if status[0] in "45":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)
        if op.get("security"):
            assert "401" in responses, path
        if "application/json" in op.get("requestBody", {}).get("content", {}):
            assert {"400", "422"} <= set(responses), path

    login = spec["paths"]["/v1/auth/email/login"]["post"]["responses"]
    assert refused.status_code == 422 and "422" in login
    upload = spec["paths"]["/v1/media"]["post"]["responses"]
    assert {"401", "403", "413", "415", "422", "429", "503"} <= set(upload)
    download = spec["paths"]["/v1/media/{media_id}/{variant}"]
    assert set(download) == {"get", "head"}
    assert set(download["get"]["responses"]["200"]["content"]) == {
        "image/webp",
        "image/jpeg",
        "application/octet-stream",
    }
    assert {"206", "304", "404", "416"} <= set(download["get"]["responses"])


async def test_jwks_publishes_the_token_key(sqlite_node: ServerProcess) -> None:
    """The access token's kid is in /.well-known/jwks.json as an Ed25519 OKP key."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    try:
        header_b64 = (alice.access_token or "").split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
        async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
            keys = (await http.get("/.well-known/jwks.json")).json()["keys"]
        assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt"
        assert [
            k
            for k in keys
            if k["kid"] == header["kid"] and k["crv"] == "Ed25519" and k["kty"] == "OKP"
        ]
    finally:
        await alice.close()


async def test_request_id_is_echoed_or_generated(sqlite_node: ServerProcess) -> None:
    """A sane X-Request-ID comes back unchanged and appears in the log; others are replaced."""
    async with httpx.AsyncClient(base_url=sqlite_node.url) as http:
        given = await http.get("/v1/me", headers={"X-Request-ID": "trace-abc.123"})
        assert given.headers["x-request-id"] == "trace-abc.123"
        bogus = await http.get("/healthz", headers={"X-Request-ID": "no spaces <allowed>"})
        assert bogus.headers["x-request-id"] != "no spaces <allowed>"
        assert len(bogus.headers["x-request-id"]) == 32
    record = sqlite_node.wait_for_record(lambda r: r.get("request_id") == "trace-abc.123")
    assert record["status"] == 401
