"""A small OpenID Connect provider for tests: a real HTTP server on a loopback port.

Each tenant (``/<name>`` under the server, its own issuer) has a discovery
document, an authorize endpoint that approves its test user at once
(redirecting back with ``code``, ``state`` and ``iss``), a token endpoint that
checks the client's secret (Basic, form or none), the PKCE verifier and that
a code is used once, and a JWKS with RSA, P-256 and Ed25519 keys. Switches
make it misbehave: tokens with the wrong ``aud``, ``iss``, ``nonce``,
signature, algorithm or key, expired ones; endpoints that fail, hang, drip or
send too much.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

LOOPBACK = "127.0.0.1"
HUGE_BYTES = 2 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class ProviderUser:
    """Who the provider says signed in."""

    sub: str = field(default_factory=lambda: f"user-{uuid.uuid4().hex}")
    name: str = "Alice Example"
    preferred_username: str = "alice"
    email: str = "alice@example.test"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def new_key(alg: str) -> SigningKey:
    private: Any
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return SigningKey(kid=f"{alg.lower()}-{secrets.token_hex(4)}", alg=alg, private=private)


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str
    challenge: str
    user: ProviderUser


class Tenant:
    """One issuer on the fake server, with its client registration and switches."""

    def __init__(
        self,
        server: FakeOidcProvider,
        name: str,
        *,
        client_id: str,
        client_secret: str | None,
        auth_method: str = "client_secret_basic",
    ) -> None:
        self.server = server
        self.name = name
        self.client_id = client_id
        self.client_secret = client_secret
        self.auth_method = auth_method
        self.redirect_uri = ""
        self.keys = {alg: new_key(alg) for alg in ("RS256", "ES256", "EdDSA")}
        self.reset()

    def reset(self) -> None:
        """Well-behaved again, with a fresh test user."""
        self.user = ProviderUser()
        self.signing_alg = "RS256"
        # authorize: "approve" | "deny" | "wrong_iss_param"
        self.authorize = "approve"
        # id token: "good" | "wrong_aud" | "wrong_iss" | "bad_signature" | "alg_none"
        # | "alg_hs256" | "expired" | "future_iat" | "wrong_nonce" | "no_nonce"
        # | "unknown_kid" | "extra_aud_no_azp" | "wrong_azp"
        self.id_token = "good"
        # token endpoint: "ok" | "500" | "hang" | "drip" | "huge" | "not_json"
        # | "no_id_token" | "invalid_grant"
        self.token_endpoint = "ok"
        # discovery: "ok" | "hang" | "drip" | "huge" | "wrong_issuer" | "http_endpoints"
        self.discovery = "ok"
        # jwks: "ok" | "huge" | "500"
        self.jwks = "ok"
        self.discovery_fetches = 0
        self.jwks_fetches = 0
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []

    @property
    def issuer(self) -> str:
        return f"{self.server.url}/{self.name}"

    def rotate_keys(self) -> None:
        """New keys under new kids; the old ones leave the JWKS."""
        self.keys = {alg: new_key(alg) for alg in self.keys}

    def provider_settings(self, slug: str, display_name: str = "") -> dict[str, Any]:
        """This tenant as an entry of PARLEY_AUTH_OIDC_PROVIDERS."""
        entry: dict[str, Any] = {"slug": slug, "issuer": self.issuer, "client_id": self.client_id}
        if self.client_secret is not None:
            entry["client_secret"] = self.client_secret
        if display_name:
            entry["display_name"] = display_name
        return entry

    # -- documents --------------------------------------------------------------------

    def discovery_document(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base + "/elsewhere" if self.discovery == "wrong_issuer" else base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            "token_endpoint_auth_methods_supported": [self.auth_method],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"],
        }

    def jwks_document(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys.values()]}

    def mint_id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.user.sub,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            "nonce": grant.nonce,
            "name": grant.user.name,
            "preferred_username": grant.user.preferred_username,
            "email": grant.user.email,
            "email_verified": True,
        }
        key = self.keys[self.signing_alg]
        mode = self.id_token
        if mode == "wrong_aud":
            claims["aud"] = "another-client"
        elif mode == "wrong_iss":
            claims["iss"] = self.issuer + "/impostor"
        elif mode == "expired":
            claims["iat"], claims["exp"] = now - 3600, now - 1800
        elif mode == "future_iat":
            claims["iat"] = now + 3600
        elif mode == "wrong_nonce":
            claims["nonce"] = "not-the-nonce-of-this-sign-in"
        elif mode == "no_nonce":
            del claims["nonce"]
        elif mode == "extra_aud_no_azp":
            claims["aud"] = [grant.client_id, "another-client"]
        elif mode == "wrong_azp":
            claims["azp"] = "another-client"
        elif mode == "unknown_kid":
            key = new_key(self.signing_alg)  # never published
        elif mode == "alg_none":
            header = {"alg": "none", "typ": "JWT", "kid": key.kid}
            return f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}."
        elif mode == "alg_hs256":
            # The classic forgery: HMAC keyed with the provider's public key.
            header = {"alg": "HS256", "typ": "JWT", "kid": self.keys["RS256"].kid}
            signing_input = (
                f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
            )
            mac = hmac.new(
                self.keys["RS256"].public_pem(), signing_input.encode(), hashlib.sha256
            ).digest()
            return f"{signing_input}.{_b64url(mac)}"
        token = jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid})
        if mode == "bad_signature":
            head, body, signature = token.split(".")
            raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
            raw[len(raw) // 2] ^= 0x01
            token = f"{head}.{body}.{_b64url(bytes(raw))}"
        return token


class FakeOidcProvider:
    """The HTTP server holding the tenants; ``async with`` or start/stop."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.tenants: dict[str, Tenant] = {}
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._codes: dict[str, Grant] = {}

    def tenant(
        self,
        name: str,
        *,
        client_id: str = "parley-test-client",
        client_secret: str | None = "s3cret-client-secret",
        auth_method: str = "client_secret_basic",
    ) -> Tenant:
        tenant = Tenant(
            self, name, client_id=client_id, client_secret=client_secret, auth_method=auth_method
        )
        self.tenants[name] = tenant
        return tenant

    async def start(self) -> FakeOidcProvider:
        app = web.Application()
        app.router.add_get("/{tenant}/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/{tenant}/authorize", self._authorize)
        app.router.add_post("/{tenant}/token", self._token)
        app.router.add_get("/{tenant}/jwks", self._jwks)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, self.port).start()
        return self

    async def stop(self) -> None:
        self._released.set()  # hanging and dripping handlers return
        if self._runner is not None:
            await self._runner.cleanup()

    # -- misbehaviours ------------------------------------------------------------------

    async def _hang(self) -> web.Response:
        await self._released.wait()
        return web.Response(status=504)

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        """Headers at once, then one byte of a never-ending JSON value now and then."""
        response = web.StreamResponse(headers={"content-type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b"[")
            while not self._released.is_set():
                await response.write(b" ")
                await asyncio.sleep(0.1)
        except ConnectionResetError:
            pass  # the client gave up, as it should
        return response

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        """Chunked, no Content-Length: only counting the bytes stops it."""
        response = web.StreamResponse(headers={"content-type": "application/json"})
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            await response.write(b'{"padding": "')
            for _ in range(HUGE_BYTES // len(chunk)):
                if self._released.is_set():
                    break
                await response.write(chunk)
            await response.write(b'"}')
        except ConnectionResetError:
            pass  # the client stopped reading at its limit, as it should
        return response

    # -- endpoints --------------------------------------------------------------------------

    def _tenant(self, request: web.Request) -> Tenant:
        tenant = self.tenants.get(request.match_info["tenant"])
        if tenant is None:
            raise web.HTTPNotFound()
        return tenant

    async def _discovery(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        tenant.discovery_fetches += 1
        if tenant.discovery == "hang":
            return await self._hang()
        if tenant.discovery == "drip":
            return await self._drip(request)
        if tenant.discovery == "huge":
            padding = "x" * HUGE_BYTES
            return web.json_response({**tenant.discovery_document(), "padding": padding})
        return web.json_response(tenant.discovery_document())

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        tenant.jwks_fetches += 1
        if tenant.jwks == "huge":
            return await self._huge(request)
        if tenant.jwks == "500":
            return web.json_response({"error": "server_error"}, status=500)
        return web.json_response(tenant.jwks_document())

    async def _authorize(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        query = dict(request.query)
        tenant.authorize_requests.append(query)
        # A provider never redirects to an unregistered URI (RFC 6749 section 4.1.2.1).
        if (
            query.get("client_id") != tenant.client_id
            or query.get("redirect_uri") != tenant.redirect_uri
        ):
            return web.Response(status=400, text="unknown client or redirect_uri")
        back = tenant.redirect_uri
        state = query.get("state", "")
        issuer = tenant.issuer if tenant.authorize != "wrong_iss_param" else self.url + "/other"
        valid = (
            query.get("response_type") == "code"
            and "openid" in query.get("scope", "").split()
            and query.get("code_challenge_method") == "S256"
            and len(query.get("code_challenge", "")) == 43
            and query.get("nonce")
            and state
        )
        if not valid:
            params = {"error": "invalid_request", "state": state, "iss": issuer}
        elif tenant.authorize == "deny":
            params = {"error": "access_denied", "state": state, "iss": issuer}
        else:
            code = secrets.token_urlsafe(24)
            self._codes[code] = Grant(
                client_id=tenant.client_id,
                redirect_uri=back,
                nonce=query["nonce"],
                challenge=query["code_challenge"],
                user=tenant.user,
            )
            params = {"code": code, "state": state, "iss": issuer}
        raise web.HTTPFound(f"{back}?{urlencode(params)}")

    def _client_authenticated(self, tenant: Tenant, request: web.Request, form: Any) -> bool:
        if tenant.auth_method == "client_secret_basic":
            header = request.headers.get("authorization", "")
            if not header.startswith("Basic "):
                return False
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return (
                unquote_plus(user) == tenant.client_id
                and unquote_plus(password) == tenant.client_secret
                and "client_secret" not in form
            )
        if tenant.auth_method == "client_secret_post":
            return bool(
                form.get("client_id") == tenant.client_id
                and form.get("client_secret") == tenant.client_secret
            )
        # A public client: identified, not authenticated.
        return form.get("client_id") == tenant.client_id and "client_secret" not in form

    async def _token(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        form = await request.post()
        tenant.token_requests.append({k: str(v) for k, v in form.items()})
        behaviour = tenant.token_endpoint
        if behaviour == "500":
            return web.json_response({"error": "server_error"}, status=500)
        if behaviour == "hang":
            return await self._hang()
        if behaviour == "drip":
            return await self._drip(request)
        if behaviour == "huge":
            return await self._huge(request)
        if behaviour == "not_json":
            return web.Response(text="<html>oops</html>", content_type="text/html")
        if not self._client_authenticated(tenant, request, form):
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = self._codes.pop(str(form.get("code", "")), None)  # a code works once
        verifier = str(form.get("code_verifier", ""))
        if (
            behaviour == "invalid_grant"
            or form.get("grant_type") != "authorization_code"
            or grant is None
            or grant.redirect_uri != form.get("redirect_uri")
            or _b64url(hashlib.sha256(verifier.encode()).digest()) != grant.challenge
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        answer: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 3600,
        }
        if behaviour != "no_id_token":
            answer["id_token"] = tenant.mint_id_token(grant)
        return web.json_response(answer, headers={"cache-control": "no-store"})
