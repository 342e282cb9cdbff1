"""The deploy files (Dockerfile, docker-compose.yml, nginx.conf) say what operators rely on.

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
    """nginx publishes 8080:80, mounts ./nginx.conf and depends on parley."""
    nginx = compose["services"]["nginx"]
    assert "8080:80" in [str(p) for p in nginx["ports"]]
    assert any(str(v).startswith("./nginx.conf:") for v in nginx["volumes"])
    assert "parley" in _depends_on(nginx)


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
