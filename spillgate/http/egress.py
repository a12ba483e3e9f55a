"""How a new upstream connection leaves the gateway: straight to the upstream, or through an
HTTP(S) proxy's ``CONNECT`` tunnel; and with which TLS settings (a private CA, no check at all,
a client certificate).

The settings are plain values (:class:`TlsOptions`, :class:`Proxy`) that the config loader reads
and checks; :func:`tls_context` turns the TLS ones into the one ``ssl.SSLContext`` a connection
pool uses, and :func:`open_connection` opens one connection with them. Only new connections come
here: a pooled keep-alive connection is reused as it is.

Failures: an ``OSError`` (``ssl.SSLError`` included) for the TCP connection or the TLS handshake
with the upstream, a :class:`ProxyError` for everything about the proxy (unreachable, its TLS,
its refusal of ``CONNECT``). No message carries the proxy's credentials.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar, cast
from urllib.parse import unquote, urlsplit

MAX_PROXY_ANSWER = 16 * 1024
"""Bytes of the proxy's status line and headers in answer to ``CONNECT``, at most."""

_P = TypeVar("_P", bound=asyncio.Protocol)


# -- TLS -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """A provider's TLS settings (``providers.<name>.tls``). The defaults are the system's
    trust store with certificate and host-name checks, as without the section."""

    ca_file: str | None = None
    """A PEM bundle of CAs trusted in addition to the system store (a corporate CA)."""
    verify: bool = True
    """``False``: no certificate or host-name check (the loader warns loudly)."""
    client_cert: str | None = None
    """A PEM certificate chain presented to an upstream that asks for one (mutual TLS)."""
    client_key: str | None = None
    """Its private key (PEM, unencrypted), unless it is in ``client_cert``."""
    digest: str = ""
    """SHA-256 of the files' contents when they were loaded: a reload after a certificate was
    rotated at the same path makes a new connection pool."""

    @property
    def default(self) -> bool:
        return self.ca_file is None and self.verify and self.client_cert is None


class TlsSetupError(ValueError):
    """A TLS file that cannot be used; ``key`` names the setting (``ca_file``, ``client_cert``,
    ``client_key``), the message says why."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def tls_context(options: TlsOptions) -> ssl.SSLContext:
    """The client context for ``options``, built once per connection pool; :class:`TlsSetupError`
    for a file that is missing, unreadable or not what it should be."""
    ctx = ssl.create_default_context()
    if not options.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if options.ca_file is not None:
        pem = _read_pem(options.ca_file, "ca_file")
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise TlsSetupError("ca_file", f"no PEM certificate in {options.ca_file}")
        try:
            ctx.load_verify_locations(cadata=pem)
        except (ssl.SSLError, ValueError) as exc:
            raise TlsSetupError(
                "ca_file", f"not a valid PEM certificate bundle: {options.ca_file} ({_why(exc)})"
            ) from None
    if options.client_cert is not None:
        _load_client_cert(ctx, options.client_cert, options.client_key)
    elif options.client_key is not None:
        raise TlsSetupError("client_key", "needs client_cert (the certificate it belongs to)")
    return ctx


def _load_client_cert(ctx: ssl.SSLContext, cert: str, key: str | None) -> None:
    pem = _read_pem(cert, "client_cert")
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise TlsSetupError("client_cert", f"no PEM certificate in {cert}")
    key_pem, key_name, key_path = (
        (pem, "client_cert", cert) if key is None else (_read_pem(key, "client_key"), "client_key", key)
    )
    if "PRIVATE KEY-----" not in key_pem:
        where = f"no PEM private key in {key_path}"
        raise TlsSetupError(key_name, where + (" (give it as client_key)" if key is None else ""))
    if "ENCRYPTED" in key_pem:
        raise TlsSetupError(
            key_name,
            f"the private key in {key_path} is encrypted; a passphrase is not supported "
            "(decrypt it: openssl pkey -in KEY -out KEY.pem, readable by the gateway only)",
        )
    try:
        ctx.load_cert_chain(cert, key, password=_no_passphrase)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TlsSetupError(
            key_name,
            f"the certificate in {cert} and the private key in {key_path} do not load together ({_why(exc)})",
        ) from None


def _no_passphrase() -> str:
    raise ValueError("the private key asks for a passphrase")  # never a prompt on the terminal


def _read_pem(path: str, key: str) -> str:
    try:
        return Path(path).read_bytes().decode("ascii", errors="replace")
    except OSError as exc:
        raise TlsSetupError(key, f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None


def tls_digest(options: TlsOptions) -> str:
    """SHA-256 over the contents of the files ``options`` names (empty when it names none)."""
    files = [f for f in (options.ca_file, options.client_cert, options.client_key) if f is not None]
    if not files:
        return ""
    h = hashlib.sha256()
    for name in files:
        try:
            h.update(Path(name).read_bytes())
        except OSError:
            h.update(b"\0unreadable")
        h.update(b"\0")
    return h.hexdigest()


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return str(exc) or type(exc).__name__


def describe(exc: OSError) -> str:
    """An upstream connection's ``OSError`` as a short reason (a TLS failure named as one)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = ""
        if exc.verify_code in (18, 19, 20, 21):  # self-signed / unknown issuer
            hint = " (signed by a CA the gateway does not trust: set tls.ca_file)"
        return f"TLS certificate not accepted: {exc.verify_message}{hint}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {_why(exc)}"
    return exc.strerror or type(exc).__name__


# -- the proxy -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP(S) proxy that tunnels with ``CONNECT`` (``providers.<name>.proxy``)."""

    scheme: Literal["http", "https"]
    host: str
    port: int
    credentials: str | None = field(default=None, repr=False)
    """``user:password`` from the URL, sent as ``Proxy-Authorization: Basic``; never printed."""

    @property
    def address(self) -> str:
        """``http://proxy.example:3128``: the proxy as logs and errors name it (no credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def authorization(self) -> str | None:
        if self.credentials is None:
            return None
        return "Basic " + base64.b64encode(self.credentials.encode("utf-8")).decode("ascii")


def parse_proxy(url: str) -> Proxy:
    """``http://[user:password@]host[:port]`` or ``https://…`` (port: 80 / 443 by default);
    ``ValueError`` otherwise, whose message never quotes the URL (it may hold a password)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("not a valid URL (expected http://[user:password@]host:port)") from None
    if parts.scheme not in ("http", "https"):
        shown = f" {parts.scheme}://" if parts.scheme.isalnum() else ""
        raise ValueError(
            f"the proxy URL's scheme{shown} is not supported: http:// or https:// "
            "(an HTTP proxy that tunnels with CONNECT)"
        )
    if not parts.hostname:
        raise ValueError("the proxy URL has no host (expected http://[user:password@]host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the proxy URL takes no path, query or fragment (expected http://host:port)")
    credentials = None
    if parts.username is not None or parts.password is not None:
        credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    scheme: Literal["http", "https"] = "https" if parts.scheme == "https" else "http"
    return Proxy(scheme, parts.hostname, port or (443 if scheme == "https" else 80), credentials)


class ProxyError(Exception):
    """The proxy could not be reached, or did not open the tunnel; the message says which."""


class _Tunnel(asyncio.Protocol):
    """Sends ``CONNECT`` and reads the proxy's answer head; then the connection is handed on."""

    def __init__(self, request: bytes, done: asyncio.Future[bytes]) -> None:
        self.request = request
        self.done = done
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_PROXY_ANSWER:
                self.done.set_exception(
                    ProxyError(f"answered CONNECT with over {MAX_PROXY_ANSWER} bytes of headers")
                )
            return
        if end + 4 != len(self.buffer):
            self.done.set_exception(
                ProxyError("sent bytes after its answer to CONNECT, before the upstream spoke")
            )
            return
        assert self.transport is not None
        self.transport.pause_reading()
        self.done.set_result(bytes(self.buffer[:end]))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ProxyError("closed the connection before answering CONNECT"))


def _status(head: bytes, proxy: Proxy) -> tuple[int, str]:
    """The status code and reason phrase of the proxy's answer (a reason that quotes the
    credentials is dropped)."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ProxyError("answered CONNECT with something other than an HTTP/1.x status line")
    reason = "".join(c for c in reason if c.isprintable())[:80].strip()
    auth = proxy.authorization()
    if auth is not None and proxy.credentials is not None:
        password = proxy.credentials.partition(":")[2]
        if auth.removeprefix("Basic ") in reason or (len(password) >= 4 and password in reason):
            reason = ""
    return int(code), reason


async def _tunnel(
    loop: asyncio.AbstractEventLoop,
    proxy: Proxy,
    proxy_ssl: ssl.SSLContext | None,
    host: str,
    port: int,
) -> asyncio.Transport:
    """A transport through the proxy to ``host:port``, reading paused, nothing sent on it yet."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    head = [f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"]
    auth = proxy.authorization()
    if auth is not None:
        head.append(f"Proxy-Authorization: {auth}\r\n")
    head.append("\r\n")
    done: asyncio.Future[bytes] = loop.create_future()
    where = f"proxy {proxy.address}"
    try:
        transport, _ = await loop.create_connection(
            lambda: _Tunnel("".join(head).encode("latin-1"), done),
            proxy.host,
            proxy.port,
            ssl=proxy_ssl if proxy.scheme == "https" else None,
            server_hostname=proxy.host if proxy.scheme == "https" else None,
        )
    except OSError as exc:
        raise ProxyError(f"could not connect to {where}: {describe(exc)}") from None
    try:
        try:
            code, reason = _status(await done, proxy)
        except ProxyError as exc:
            raise ProxyError(f"{where} {exc}") from None
        if not 200 <= code < 300:
            hint = ""
            if code == 407:
                hint = (
                    " (check the proxy's user:password@ in the proxy URL)"
                    if auth is not None
                    else " (it wants credentials: user:password@ in the proxy URL)"
                )
            raise ProxyError(f"{where} refused CONNECT to {target}: {code} {reason}".rstrip() + hint)
    except BaseException:
        transport.abort()
        raise
    return transport


async def open_connection(
    factory: Callable[[], _P],
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None,
    proxy: Proxy | None = None,
    proxy_tls: ssl.SSLContext | None = None,
) -> _P:
    """One new connection to ``host:port`` for the protocol ``factory`` makes: TLS when ``tls``
    is given (checked against ``host``), through ``proxy``'s tunnel when one is given (an
    ``https://`` proxy is checked with ``proxy_tls``, by default the system's). The caller bounds
    the time (``timeouts.connect`` covers the proxy, the tunnel and both handshakes)."""
    loop = asyncio.get_running_loop()
    if proxy is None:
        _, protocol = await loop.create_connection(
            factory, host, port, ssl=tls, server_hostname=host if tls is not None else None
        )
        return protocol
    if proxy.scheme == "https" and proxy_tls is None:
        proxy_tls = ssl.create_default_context()
    raw = await _tunnel(loop, proxy, proxy_tls, host, port)
    conn = factory()
    try:
        if tls is None:
            raw.set_protocol(conn)
            conn.connection_made(raw)
            raw.resume_reading()
            return conn
        secure = await loop.start_tls(raw, conn, tls, server_hostname=host)
    except BaseException:
        raw.abort()
        raise
    if secure is None:  # the tunnel closed during the handshake
        raw.abort()
        raise ConnectionResetError("the tunnel closed during the TLS handshake")
    conn.connection_made(secure)
    return conn
