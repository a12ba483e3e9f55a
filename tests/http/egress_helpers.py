"""What the egress tests stand on: a private CA and its certificates (made with the ``openssl``
command line), a TLS front that puts the fake upstream behind HTTPS with that CA's certificate,
and a local HTTP ``CONNECT`` proxy that counts its tunnels, can ask for Basic credentials and can
refuse. Everything listens on 127.0.0.1, on a free port, and is closed by the test that opened it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

HEAD_LIMIT = 16 * 1024
"""Bytes of a CONNECT request head the proxy reads, at most."""
HEAD_TIMEOUT = 5.0


@dataclass(frozen=True)
class Pki:
    """A test CA, a server certificate for 127.0.0.1 / localhost and a client certificate, as
    PEM files in one directory."""

    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_combined: Path
    """The client certificate with its key in the same file."""
    other_ca: Path
    """A CA that signed nothing here (trusting it alone trusts none of the above)."""
    encrypted_key: Path
    """The client key encrypted with a passphrase."""

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=self.ca)
        return ctx


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _ca(cwd: Path, name: str, cn: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={cn}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=cwd,
    )  # fmt: skip


def _leaf(cwd: Path, name: str, cn: str, extensions: str) -> None:
    (cwd / f"{name}.ext").write_text(
        f"{extensions}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
        "basicConstraints=critical,CA:FALSE\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
        cwd=cwd,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=cwd,
    )  # fmt: skip


def make_pki(where: Path) -> Pki:
    where.mkdir(parents=True, exist_ok=True)
    _ca(where, "ca", "Spillgate Test CA")
    _ca(where, "other-ca", "Some Other CA")
    _leaf(
        where, "server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
    )
    _leaf(where, "client", "spillgate-test-client", "extendedKeyUsage=clientAuth")
    combined = where / "client-combined.pem"
    combined.write_text((where / "client.pem").read_text() + (where / "client.key").read_text())
    _openssl(
        "pkey", "-in", "client.key", "-aes256", "-passout", "pass:hunter22", "-out", "client-enc.key",
        cwd=where,
    )  # fmt: skip
    return Pki(
        dir=where,
        ca=where / "ca.pem",
        server_cert=where / "server.pem",
        server_key=where / "server.key",
        client_cert=where / "client.pem",
        client_key=where / "client.key",
        client_combined=combined,
        other_ca=where / "other-ca.pem",
        encrypted_key=where / "client-enc.key",
    )


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF (or until the other side goes away), then half-close."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        if not writer.can_write_eof():
            writer.close()


@dataclass
class _Server:
    """A loopback server whose connections are closed with it."""

    server: asyncio.Server | None = None
    tasks: set[asyncio.Task[object]] = field(default_factory=set)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _relay(
        self, a: tuple[asyncio.StreamReader, asyncio.StreamWriter], b_host: str, b_port: int
    ) -> None:
        reader, writer = a
        up_reader, up_writer = await asyncio.open_connection(b_host, b_port)
        self.writers.add(up_writer)
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        up_writer.close()

    def _track(self, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()  # its handler sees the end and returns
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks), timeout=2.0)
            for task in pending:
                task.cancel()
        if self.server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)


@dataclass
class TlsFront(_Server):
    """HTTPS on a loopback port, relayed in plain HTTP to ``target_port`` (the fake upstream)."""

    target_port: int = 0
    connections: int = 0
    """TLS connections accepted (handshake done)."""

    async def start(self, ctx: ssl.SSLContext) -> TlsFront:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ctx)
        return self

    def url(self, host: str = "127.0.0.1", path: str = "/v1") -> str:
        return f"https://{host}:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track(writer)
        self.connections += 1
        try:
            await self._relay((reader, writer), "127.0.0.1", self.target_port)
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            writer.close()


@dataclass
class ConnectProxy(_Server):
    """An HTTP proxy that only tunnels (``CONNECT``), on a loopback port."""

    credentials: str | None = None
    """``user:password`` it asks for (407 without them), or ``None``."""
    refuse: int | None = None
    """Answer every CONNECT with this status (e.g. 403) instead of tunnelling..."""
    reason: str = "Forbidden By Policy"
    """...and this reason phrase."""
    tunnels: int = 0
    """Tunnels opened."""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """Every CONNECT request line with its headers (lower-case names)."""

    async def start(self, ctx: ssl.SSLContext | None = None) -> ConnectProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ctx)
        return self

    def url(self, scheme: str = "http", userinfo: str = "") -> str:
        return f"{scheme}://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            if len(head) > HEAD_LIMIT:
                return
            line, *rest = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
            self.requests.append((line, headers))
            method, target, _ = line.split(" ", 2)
            if method != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            if self.refuse is not None:
                writer.write(f"HTTP/1.1 {self.refuse} {self.reason}\r\nContent-Length: 0\r\n\r\n".encode())
                return
            if self.credentials is not None:
                expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
                if headers.get("proxy-authorization") != expected:
                    writer.write(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n\r\n'
                    )
                    return
            host, _, port = target.rpartition(":")
            self.tunnels += 1
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await self._relay((reader, writer), host.strip("[]"), int(port))
        except (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
