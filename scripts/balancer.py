"""A real nginx or HAProxy in front of local Parley nodes, run without privileges.

The configuration is the shipped one (``config/deploy/nginx.conf`` or
``haproxy.cfg``) with only the deployment-specific lines rewritten: the
listening addresses, the upstream nodes and the file locations (pid, logs,
temporary files, certificates, all in a fresh prefix directory). Every rewrite
must match exactly once, so a change to the shipped file that breaks local
trials fails loudly instead of testing something else.

With ``tls`` the balancer runs as shipped: https on one port, and on another
the plain-HTTP port that redirects to https and answers ACME challenges.
Without it, the shipped https server is rendered as a plain-HTTP one (the
redirect and the certificate dropped), for local trials and tests that are not
about TLS.

When started as root, the balancer runs as ``nobody`` (it needs no privilege:
the port is high and every file is in its own directory).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "config" / "deploy"
Kind = Literal["nginx", "haproxy"]
KINDS: tuple[Kind, ...] = ("nginx", "haproxy")

_NOBODY = 65534
_PR_SET_PDEATHSIG = 1
INSTALL_HINT = "apt-get install -y nginx-light haproxy   (or: make balancers)"


class BalancerError(RuntimeError):
    """The balancer is missing, its configuration is invalid, or it did not start."""


def _sub(pattern: str, replacement: str, text: str, *, flags: int = re.MULTILINE) -> str:
    new, count = re.subn(pattern, lambda _: replacement, text, flags=flags)
    if count != 1:
        raise BalancerError(f"shipped config changed: {pattern!r} matched {count} times, not once")
    return new


@dataclass(frozen=True)
class BalancerTls:
    """TLS at the balancer: a certificate chain and its key (PEM files), and the
    ``host:port`` of the ACME client HAProxy passes http-01 challenges to (nginx
    serves them itself, from ``Balancer.acme_webroot``)."""

    certificate: Path
    private_key: Path
    acme_server: str = "127.0.0.1:8402"


def render_nginx(
    source: str,
    *,
    listen: str,
    nodes: list[str],
    prefix: Path,
    hash_key: str | None = None,
    tls_listen: str | None = None,
) -> str:
    """The shipped nginx.conf for these nodes, listening on ``listen``, files under ``prefix``.

    With ``tls_listen``, https is served there (certificates in ``prefix``/tls,
    ACME challenges from ``prefix``/acme) and ``listen`` redirects to it, as
    shipped; without it, the https server listens on ``listen`` in plain HTTP.

    ``hash_key`` replaces ``$remote_addr`` as the sticky key: a load generator
    whose clients all share one address and use only WebSockets (one TCP
    connection per socket) spreads over the nodes with ``$remote_addr$remote_port``.
    """
    if hash_key is not None:
        source = _sub(
            r"^\s*hash \$remote_addr consistent;$", f"        hash {hash_key} consistent;", source
        )
    text = _sub(r"^worker_processes .*;$", "worker_processes 2;", source)
    files = f"error_log {prefix}/error.log warn;\npid {prefix}/nginx.pid;"
    text = _sub(r"^error_log .*;$", files, text)
    text = _sub(r"^(\s*)access_log .*;$", f"    access_log {prefix}/access.log parley;", text)
    temp = "\n".join(
        f"    {name}_temp_path {prefix}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = _sub(r"^http \{$", "http {\n" + temp, text)
    servers = "\n".join(f"        server {node} max_fails=3 fail_timeout=10s;" for node in nodes)
    text = _sub(r"^\s*server parley:8000 .*;$", servers, text)
    if tls_listen is None:
        text = _sub(r"^    server \{\n\s*listen 80 default_server;\n.*?^    \}\n", "", text,
                    flags=re.MULTILINE | re.DOTALL)  # fmt: skip
        text = _sub(r"^\s*ssl_certificate .*\n", "", text)
        text = _sub(r"^\s*ssl_certificate_key .*\n", "", text)
        return _sub(
            r"^\s*listen 443 ssl default_server;$", f"        listen {listen} default_server;", text
        )
    text = _sub(r"^\s*listen 80 default_server;$", f"        listen {listen} default_server;", text)
    text = _sub(
        r"^\s*listen 443 ssl default_server;$",
        f"        listen {tls_listen} ssl default_server;",
        text,
    )
    text = _sub(
        r"^\s*ssl_certificate /etc/nginx/tls/fullchain\.pem;$",
        f"        ssl_certificate {prefix}/tls/fullchain.pem;",
        text,
    )
    text = _sub(
        r"^\s*ssl_certificate_key /etc/nginx/tls/privkey\.pem;$",
        f"        ssl_certificate_key {prefix}/tls/privkey.pem;",
        text,
    )
    return _sub(r"^\s*root /var/www/acme;$", f"            root {prefix}/acme;", text)


def render_haproxy(
    source: str,
    *,
    listen: str,
    nodes: list[str],
    prefix: Path,
    tls_listen: str | None = None,
    acme_server: str | None = None,
) -> str:
    """The shipped haproxy.cfg for these nodes, on ``listen``, pid file under ``prefix``.

    With ``tls_listen``, https is served there (certificate in ``prefix``/tls,
    ACME challenges passed to ``acme_server``) and ``listen`` redirects to it, as
    shipped; without it, ``listen`` serves everything in plain HTTP.
    """
    text = _sub(r"^global$", f"global\n    pidfile {prefix}/haproxy.pid", source)
    text = _sub(r"^(\s*)log stdout .*$", "    log stderr format raw local0 info", text)
    text = _sub(r"^\s*bind :80$", f"    bind {listen}", text)
    if tls_listen is None:
        text = _sub(r"^\s*bind :443 .*\n", "", text)
        text = _sub(r"^\s*http-request redirect scheme https .*\n", "", text)
    else:
        text = _sub(
            r"^\s*bind :443 ssl crt /etc/haproxy/tls/haproxy\.pem\b",
            f"    bind {tls_listen} ssl crt {prefix}/tls/haproxy.pem",
            text,
        )
        if acme_server is not None:
            text = _sub(r"^\s*server acme \S+$", f"    server acme {acme_server}", text)
    # Each connection takes two descriptors; stay within an unprivileged limit.
    text = _sub(r"^\s*maxconn \d+$", "    maxconn 8000", text)
    servers = "".join(f"    server node{i} {node}\n" for i, node in enumerate(nodes, 1))
    text, count = re.subn(
        r"(?:^\s*server node\d+ \S+\n)+", lambda _: servers, text, flags=re.MULTILINE
    )
    if count != 1:
        raise BalancerError("shipped haproxy.cfg changed: not one block of `server nodeN` lines")
    return text


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent ends (Linux prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def binary(kind: Kind) -> str:
    """Path of the nginx or haproxy executable; BalancerError naming the fix if missing."""
    for candidate in (shutil.which(kind), f"/usr/sbin/{kind}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BalancerError(f"{kind} is not installed; install it with: {INSTALL_HINT}")


@dataclass
class Balancer:
    """One nginx or HAProxy process in front of ``nodes`` (``host:port`` strings)."""

    kind: Kind
    nodes: list[str]
    host: str = "127.0.0.1"
    port: int = 0
    prefix: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="parley-lb-")))
    proc: subprocess.Popen[bytes] | None = None
    hash_key: str | None = None  # nginx only: see render_nginx
    # With TLS, ``port`` is the plain-HTTP port (redirects, ACME) and
    # ``tls_port`` the https one.
    tls: BalancerTls | None = None
    tls_port: int = 0

    def __post_init__(self) -> None:
        self.port = self.port or free_port(self.host)
        if self.tls is not None:
            self.tls_port = self.tls_port or free_port(self.host)
        self.config = self.prefix / ("nginx.conf" if self.kind == "nginx" else "haproxy.cfg")

    @property
    def url(self) -> str:
        """Where clients reach Parley: the https port with TLS, else the plain one."""
        if self.tls is not None:
            return f"https://{self.host}:{self.tls_port}"
        return self.http_url

    @property
    def http_url(self) -> str:
        """The plain-HTTP port (with TLS: redirects to https and ACME challenges only)."""
        return f"http://{self.host}:{self.port}"

    @property
    def acme_webroot(self) -> Path:
        """nginx serves ``/.well-known/acme-challenge/<token>`` from files under here."""
        return self.prefix / "acme"

    def _install_tls_files(self, tls: BalancerTls) -> None:
        """Copy the certificate and key where the rendered config names them (the
        balancer may run as nobody and read nothing outside its prefix)."""
        directory = self.prefix / "tls"
        directory.mkdir(exist_ok=True)
        chain, key = tls.certificate.read_bytes(), tls.private_key.read_bytes()
        (directory / "fullchain.pem").write_bytes(chain)
        for name, data in (("privkey.pem", key), ("haproxy.pem", chain + key)):
            path = directory / name
            path.touch(mode=0o600)
            path.write_bytes(data)
        (self.acme_webroot / ".well-known" / "acme-challenge").mkdir(parents=True, exist_ok=True)

    @property
    def log_path(self) -> Path:
        return self.prefix / ("error.log" if self.kind == "nginx" else "haproxy.log")

    def write_config(self) -> None:
        listen = f"{self.host}:{self.port}"
        tls_listen = f"{self.host}:{self.tls_port}" if self.tls is not None else None
        if self.tls is not None:
            self._install_tls_files(self.tls)
        source = (DEPLOY / self.config.name).read_text()
        if self.kind == "nginx":
            text = render_nginx(
                source,
                listen=listen,
                nodes=self.nodes,
                prefix=self.prefix,
                hash_key=self.hash_key,
                tls_listen=tls_listen,
            )
        else:
            if self.hash_key is not None:
                raise BalancerError("a custom hash key is for nginx only")
            text = render_haproxy(
                source,
                listen=listen,
                nodes=self.nodes,
                prefix=self.prefix,
                tls_listen=tls_listen,
                acme_server=self.tls.acme_server if self.tls is not None else None,
            )
        self.config.write_text(text)
        if os.geteuid() == 0:  # the process runs as nobody and must own its files
            for path in (self.prefix, *self.prefix.rglob("*")):
                os.chown(path, 65534, 65534)

    def _command(self, *extra: str) -> list[str]:
        if self.kind == "nginx":
            return [binary("nginx"), "-p", str(self.prefix), "-c", str(self.config),
                    "-e", str(self.log_path), *extra]  # fmt: skip
        return [binary("haproxy"), "-f", str(self.config), *extra]

    def _popen(self, args: list[str], **options: Any) -> subprocess.Popen[bytes]:
        """Start the balancer binary: as ``nobody`` when we are root, else as ourselves."""
        if os.geteuid() == 0:
            options |= {"user": _NOBODY, "group": _NOBODY, "extra_groups": []}
        if threading.current_thread() is threading.main_thread():
            # Gone with us, even when we are killed: no stray balancer holds the port.
            # (Only from the main thread: the signal follows the thread that forked.)
            options["preexec_fn"] = _die_with_parent
        return subprocess.Popen(args, cwd=self.prefix, **options)  # noqa: S603 (our own argv)

    def check(self) -> None:
        """``nginx -t`` / ``haproxy -c`` on the rendered configuration."""
        flag = ("-t", "-q") if self.kind == "nginx" else ("-c", "-q")
        proc = self._popen(self._command(*flag), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output, _ = proc.communicate(timeout=30)
        if proc.returncode != 0:
            raise BalancerError(f"{self.kind} rejects {self.config}:\n{output.decode()}")

    def start(self, timeout: float = 10.0) -> Balancer:
        self.write_config()
        self.check()
        extra = ("-g", "daemon off;") if self.kind == "nginx" else ("-db",)
        with open(self.log_path if self.kind == "haproxy" else os.devnull, "ab") as log:
            self.proc = self._popen(self._command(*extra), stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BalancerError(f"{self.kind} exited at start:\n{self.log_tail()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BalancerError(f"{self.kind} not listening on {self.url} in {timeout}s")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def access_log(self) -> str:
        """Every request nginx or HAProxy logged so far."""
        path = self.prefix / "access.log" if self.kind == "nginx" else self.log_path
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # The fast stop of both: a graceful one would wait for every WebSocket.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def remove(self) -> None:
        """Stop, and delete the prefix directory."""
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)
