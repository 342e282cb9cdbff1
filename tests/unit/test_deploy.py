"""The deploy files (Dockerfile, docker-compose.yml, nginx.conf, haproxy.cfg) say what
operators rely on.

These read the files only: no Docker, no nginx, no network.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "config" / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
NGINX = DEPLOY / "nginx.conf"
HAPROXY = DEPLOY / "haproxy.cfg"
GITIGNORE = ROOT / ".gitignore"
# HSTS for at least a year (RFC 6797; what preload lists and Mozilla ask for).
_HSTS_MIN_AGE = 365 * 86400


def _instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), comments and continuations folded."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    if current:
        logical.append(current)
    result = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def _nginx_text() -> str:
    """nginx.conf with comments removed, so assertions see directives only."""
    return "\n".join(line.split("#", 1)[0] for line in NGINX.read_text().splitlines())


def _blocks(text: str, header: str) -> list[str]:
    """The bodies of every ``header {...}`` block in ``text`` (a regex), braces matched."""
    bodies = []
    for match in re.finditer(rf"{header}\s*\{{", text):
        depth, start = 1, match.end()
        for index in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                bodies.append(text[start:index])
                break
    return bodies


def _nginx_server(port: int) -> str:
    """The body of the nginx server block that listens on ``port``."""
    (server,) = [
        body
        for body in _blocks(_nginx_text(), r"\bserver")
        if re.search(rf"^\s*listen\s+(\S+:)?{port}\b", body, re.MULTILINE)
    ]
    return server


def _haproxy_lines() -> list[str]:
    """haproxy.cfg's directives, comments and blank lines removed, whitespace folded."""
    lines = (line.split("#", 1)[0] for line in HAPROXY.read_text().splitlines())
    return [" ".join(line.split()) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text())


def _depends_on(service: dict[str, Any]) -> dict[str, Any]:
    deps = service.get("depends_on", {})
    assert isinstance(deps, dict), "depends_on must use the long form with conditions"
    return deps


# --- docker-compose.yml ------------------------------------------------------


def test_compose_parses_with_all_services(compose: dict[str, Any]) -> None:
    """The compose file is valid YAML and defines parley, migrate and the four backends."""
    services = compose["services"]
    expected = {"parley", "migrate", "postgres", "redis", "opensearch", "nginx"}
    assert expected <= set(services)


def test_compose_parley_waits_for_healthy_postgres_and_redis(compose: dict[str, Any]) -> None:
    """parley starts only after postgres and redis report healthy."""
    deps = _depends_on(compose["services"]["parley"])
    assert deps["postgres"]["condition"] == "service_healthy"
    assert deps["redis"]["condition"] == "service_healthy"


def test_compose_parley_waits_for_migrate_to_finish(compose: dict[str, Any]) -> None:
    """parley starts only after the one-shot migrate service exited successfully."""
    deps = _depends_on(compose["services"]["parley"])
    assert deps["migrate"]["condition"] == "service_completed_successfully"


def test_compose_migrate_runs_parley_migrate(compose: dict[str, Any]) -> None:
    """migrate runs `parley migrate` on the same image once postgres is healthy."""
    services = compose["services"]
    migrate, parley = services["migrate"], services["parley"]
    command = migrate["command"]
    assert (command if isinstance(command, str) else " ".join(command)).split() == ["migrate"]
    assert migrate["image"] == parley["image"]
    assert migrate.get("restart", "no") == "no"
    assert _depends_on(migrate)["postgres"]["condition"] == "service_healthy"


def test_compose_parley_and_migrate_share_environment(compose: dict[str, Any]) -> None:
    """parley and migrate get the same PARLEY_* settings pointing at the compose backends."""
    services = compose["services"]
    env = services["parley"]["environment"]
    assert services["migrate"]["environment"] == env
    assert env["PARLEY_DATABASE_URL"] == "postgres://parley:parley@postgres:5432/parley"
    assert env["PARLEY_REDIS_URL"] == "redis://redis:6379/0"
    assert env["PARLEY_OPENSEARCH_URL"] == "http://opensearch:9200"
    assert env["PARLEY_AUTH_KEYS_DIR"] == "/app/var/keys"
    assert env["PARLEY_SERVER_FORWARDED_ALLOW_IPS"] == "*"
    assert all(key.startswith("PARLEY_") for key in env)


def test_compose_keys_live_on_a_named_volume(compose: dict[str, Any]) -> None:
    """The generated keys directory is a named volume, so keys survive container restarts."""
    named = set(compose.get("volumes") or {})
    mounts = [str(v).split(":") for v in compose["services"]["parley"].get("volumes", [])]
    assert any(src in named and dst == "/app/var/keys" for src, dst, *_ in mounts)


def test_compose_backends_have_healthchecks(compose: dict[str, Any]) -> None:
    """postgres, redis and opensearch define health checks (pg_isready, redis-cli ping)."""
    services = compose["services"]
    for name in ("postgres", "redis", "opensearch"):
        assert services[name]["healthcheck"]["test"], name
    assert "pg_isready" in str(services["postgres"]["healthcheck"]["test"])
    assert "redis-cli ping" in str(services["redis"]["healthcheck"]["test"])
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"


def test_compose_opensearch_is_single_node_without_security(compose: dict[str, Any]) -> None:
    """OpenSearch runs as a single node with the security plugin disabled."""
    env = compose["services"]["opensearch"]["environment"]
    assert env["discovery.type"] == "single-node"
    assert str(env["DISABLE_SECURITY_PLUGIN"]).lower() == "true"


def test_compose_nginx_fronts_parley(compose: dict[str, Any]) -> None:
    """nginx publishes 443 (https) and 80 (redirects, ACME), mounts nginx.conf, needs parley."""
    nginx = compose["services"]["nginx"]
    assert {"443:443", "80:80"} <= {str(p) for p in nginx["ports"]}
    assert any(str(v).startswith("./nginx.conf:") for v in nginx["volumes"])
    assert "parley" in _depends_on(nginx)


def test_compose_nginx_mounts_certificates_and_acme_webroot(compose: dict[str, Any]) -> None:
    """nginx reads ./tls as /etc/nginx/tls and ./acme as the ACME webroot, both read-only."""
    volumes = {str(v) for v in compose["services"]["nginx"]["volumes"]}
    assert "./tls:/etc/nginx/tls:ro" in volumes
    assert "./acme:/var/www/acme:ro" in volumes


def test_compose_public_url_is_https(compose: dict[str, Any]) -> None:
    """Parley's public URL (e-mailed links, wallet sign-in) defaults to https and can be set."""
    env = compose["services"]["parley"]["environment"]
    value = env["PARLEY_SERVER_PUBLIC_URL"]
    match = re.fullmatch(r"\$\{PARLEY_SERVER_PUBLIC_URL:-(?P<default>[^}]+)\}", value)
    assert match, value
    assert match["default"].startswith("https://")


def test_certificates_are_git_ignored() -> None:
    """config/deploy/tls/ (keys) and the ACME webroot never land in git."""
    ignored = {line.strip() for line in GITIGNORE.read_text().splitlines()}
    assert {"config/deploy/tls/", "config/deploy/acme/"} <= ignored


def test_compose_builds_parley_from_repo_root(compose: dict[str, Any]) -> None:
    """The parley image is built from the repository root, where the Dockerfile is."""
    build = compose["services"]["parley"]["build"]
    context = build if isinstance(build, str) else build["context"]
    assert (DEPLOY / context / "Dockerfile").resolve() == DOCKERFILE


# --- Dockerfile ----------------------------------------------------------------


def test_dockerfile_is_multi_stage(dockerfile: list[tuple[str, str]]) -> None:
    """The Dockerfile has a builder stage and a python:3.11-slim runtime stage."""
    froms = [args for keyword, args in dockerfile if keyword == "FROM"]
    assert len(froms) >= 2
    assert any(keyword == "COPY" and "--from=builder" in args for keyword, args in dockerfile)
    assert any("python:3.11-slim" in line for line in DOCKERFILE.read_text().splitlines())


def test_dockerfile_installs_from_lock_file(dockerfile: list[tuple[str, str]]) -> None:
    """The builder installs pinned requirements.lock, then the project without dependencies."""
    runs = " ".join(args for keyword, args in dockerfile if keyword == "RUN")
    assert "pip install -r requirements.lock" in runs
    assert "pip install --no-deps ." in runs


def test_dockerfile_runs_as_non_root(dockerfile: list[tuple[str, str]]) -> None:
    """The final USER instruction names a non-root user."""
    users = [args for keyword, args in dockerfile if keyword == "USER"]
    assert users, "no USER instruction"
    user = users[-1].split(":", 1)[0]
    assert user not in {"root", "0"}
    assert "10001" in DOCKERFILE.read_text()


def test_dockerfile_entrypoint_is_parley_serve(dockerfile: list[tuple[str, str]]) -> None:
    """ENTRYPOINT runs parley and the default command is serve."""
    entrypoints = [args for keyword, args in dockerfile if keyword == "ENTRYPOINT"]
    cmds = [args for keyword, args in dockerfile if keyword == "CMD"]
    assert entrypoints and "parley" in entrypoints[-1]
    assert cmds and "serve" in cmds[-1]


def test_dockerfile_serves_on_all_interfaces_with_healthcheck(
    dockerfile: list[tuple[str, str]],
) -> None:
    """The image binds 0.0.0.0, exposes 8000 and health-checks /healthz."""
    text = " ".join(f"{keyword} {args}" for keyword, args in dockerfile)
    assert "PARLEY_SERVER_HOST=0.0.0.0" in text
    assert any(keyword == "EXPOSE" and "8000" in args for keyword, args in dockerfile)
    checks = [args for keyword, args in dockerfile if keyword == "HEALTHCHECK"]
    assert checks and "/healthz" in checks[-1]


def test_dockerignore_keeps_local_state_out() -> None:
    """The build context excludes the venv, var/ (keys!), .git and node_modules."""
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert {".venv", "var", ".git"} <= patterns
    assert any("node_modules" in p for p in patterns)
    assert any("__pycache__" in p for p in patterns)


# --- nginx.conf ------------------------------------------------------------------


def test_nginx_has_websocket_upgrade_map() -> None:
    """nginx maps $http_upgrade to $connection_upgrade and sends it upstream."""
    text = _nginx_text()
    assert re.search(r"map\s+\$http_upgrade\s+\$connection_upgrade\s*\{", text)
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade\s*;", text)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade\s*;", text)


def test_nginx_upstream_uses_consistent_hashing() -> None:
    """The upstream is sticky: a hash directive with consistent (Socket.IO long-polling)."""
    text = _nginx_text()
    assert re.search(r"\bhash\s+\$remote_addr\s+consistent\s*;", text)
    assert re.search(r"\bserver\s+parley:8000\b", text)


def test_nginx_proxies_socketio_with_long_read_timeout() -> None:
    """/socket.io/ has its own location whose read timeout exceeds ping interval + timeout."""
    text = _nginx_text()
    match = re.search(r"location\s+/socket\.io/\s*\{(?P<body>[^}]*)\}", text)
    assert match, "no /socket.io/ location"
    timeout = re.search(r"proxy_read_timeout\s+(\d+)s?\s*;", match["body"])
    assert timeout and int(timeout[1]) > 25 + 20
    assert "proxy_pass" in match["body"]


def test_nginx_forwards_client_headers_and_body_limit() -> None:
    """nginx passes X-Forwarded-For/-Proto and X-Request-ID, and allows 26m bodies."""
    text = _nginx_text()
    for header in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Request-ID"):
        assert re.search(rf"proxy_set_header\s+{header}\s", text), header
    assert re.search(r"client_max_body_size\s+26m\s*;", text)


def test_nginx_has_events_and_http_blocks() -> None:
    """nginx.conf is a complete main config with events and http blocks."""
    text = _nginx_text()
    assert re.search(r"^events\s*\{", text, re.MULTILINE)
    assert re.search(r"^http\s*\{", text, re.MULTILINE)
    assert text.count("{") == text.count("}")


def test_nginx_serves_https_on_443_with_modern_tls() -> None:
    """A 443 ssl server with the documented certificate paths, TLS 1.2/1.3 only, a session cache."""
    server = _nginx_server(443)
    assert re.search(r"^\s*listen\s+443\s+ssl\b[^;]*;", server, re.MULTILINE)
    assert re.search(r"ssl_certificate\s+/etc/nginx/tls/fullchain\.pem\s*;", server)
    assert re.search(r"ssl_certificate_key\s+/etc/nginx/tls/privkey\.pem\s*;", server)
    protocols = re.search(r"ssl_protocols\s+([^;]+);", server)
    assert protocols and set(protocols[1].split()) == {"TLSv1.2", "TLSv1.3"}
    assert re.search(r"ssl_session_cache\s+shared:\w+:\d+m\s*;", server)


def test_nginx_https_sends_hsts() -> None:
    """Every https answer, errors too, carries Strict-Transport-Security for a year or more."""
    server = _nginx_server(443)
    hsts = re.search(
        r'add_header\s+Strict-Transport-Security\s+"max-age=(\d+)[^"]*"\s+always;', server
    )
    assert hsts and int(hsts[1]) >= _HSTS_MIN_AGE
    assert "add_header" not in "".join(_blocks(server, r"location[^{]*")), "would drop HSTS"


def test_nginx_port_80_redirects_to_https_except_acme() -> None:
    """Port 80 proxies nothing: ACME http-01 from the webroot, 308 to https for the rest."""
    server = _nginx_server(80)
    assert "proxy_pass" not in server
    acme = _blocks(server, r"location\s+\^~\s+/\.well-known/acme-challenge/")
    assert len(acme) == 1 and re.search(r"root\s+/var/www/acme\s*;", acme[0])
    (rest,) = _blocks(server, r"location\s+/(?=\s)")
    assert re.search(r"return\s+308\s+https://\$host\$request_uri\s*;", rest)


def test_nginx_proxies_once_over_tls_with_forwarded_proto() -> None:
    """Each proxy location is written once, in the https server, which passes X-Forwarded-Proto."""
    text, server = _nginx_text(), _nginx_server(443)
    for location in (r"location\s+/socket\.io/", r"location\s+=\s+/metrics", r"location\s+/\s"):
        assert len(re.findall(location, server)) == 1, location
    assert text.count("proxy_pass") == server.count("proxy_pass") == 3
    assert re.search(r"proxy_set_header\s+X-Forwarded-Proto\s+\$scheme\s*;", server)
    assert re.search(r"proxy_http_version\s+1\.1\s*;", server)


# --- haproxy.cfg -----------------------------------------------------------------


def test_haproxy_serves_https_on_443_with_modern_tls() -> None:
    """The frontend binds :443 with the documented certificate; TLS 1.2 is the floor."""
    lines = _haproxy_lines()
    assert "bind :443 ssl crt /etc/haproxy/tls/haproxy.pem alpn http/1.1" in lines
    assert "bind :80" in lines
    (options,) = [line for line in lines if line.startswith("ssl-default-bind-options ")]
    assert "ssl-min-ver TLSv1.2" in options


def test_haproxy_redirects_plain_http_except_acme_and_sends_hsts() -> None:
    """Plain HTTP gets 308 to https except ACME challenges; https answers carry HSTS."""
    lines = _haproxy_lines()
    assert "acl acme_challenge path_beg /.well-known/acme-challenge/" in lines
    assert "http-request redirect scheme https code 308 if !{ ssl_fc } !acme_challenge" in lines
    assert "use_backend acme if acme_challenge !{ ssl_fc }" in lines
    hsts = [line for line in lines if "Strict-Transport-Security" in line]
    assert len(hsts) == 1 and hsts[0].endswith("if { ssl_fc }")
    age = re.search(r"max-age=(\d+)", hsts[0])
    assert hsts[0].startswith("http-response set-header") and age
    assert int(age[1]) >= _HSTS_MIN_AGE
    assert "http-request set-header X-Forwarded-Proto https if { ssl_fc }" in lines
