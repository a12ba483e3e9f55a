"""Upstreams behind a corporate network (issue 13, point 6): a private CA, ``verify: false``, a
client certificate, and an HTTP(S) ``CONNECT`` proxy, per provider.

Against real components on loopback: a CA made with ``openssl``, the fake upstream behind a TLS
front with that CA's certificate, and a CONNECT proxy written here (egress_helpers.py); through the
upstream client alone and through a running gateway. The pure parts (proxy URLs, TLS files, the
config's errors) are tables of cases."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from spillgate.app import App
from spillgate.config import ConfigError, load_settings, parse_settings
from spillgate.config.schema import Settings
from spillgate.fake import FakeUpstream
from spillgate.gateway.runtime import Pools, http_transport
from spillgate.http.client import FailureKind, HttpClient, UpstreamFailure, UpstreamResponse
from spillgate.http.egress import Proxy, TlsOptions, TlsSetupError, parse_proxy, tls_context

from ..harness import TIMEOUTS, Scenario, start_scenario
from .egress_helpers import ConnectProxy, Pki, TlsFront, make_pki

BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
STREAM = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
HEADERS = [("content-type", "application/json")]
PASSWORD = "s3cret/Pa:ss@word"
"""The proxy password: with characters a URL must escape (``%2F``, ``%3A``, ``%40``)."""
USERINFO = "corp-user:s3cret%2FPa%3Ass%40word"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def front(fake: FakeUpstream, pki: Pki) -> AsyncIterator[TlsFront]:
    """The fake upstream behind HTTPS (a certificate of the test CA)."""
    server = await TlsFront(target_port=fake.port).start(pki.server_context())
    yield server
    await server.close()


@pytest.fixture
async def mtls_front(fake: FakeUpstream, pki: Pki) -> AsyncIterator[TlsFront]:
    """The same, asking every client for a certificate of the test CA."""
    server = await TlsFront(target_port=fake.port).start(pki.server_context(require_client_cert=True))
    yield server
    await server.close()


@pytest.fixture
async def proxy() -> AsyncIterator[ConnectProxy]:
    """A CONNECT proxy that wants ``corp-user`` and :data:`PASSWORD`."""
    server = await ConnectProxy(credentials=f"corp-user:{PASSWORD}").start()
    yield server
    await server.close()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def send(client: HttpClient, body: bytes = BODY, connect: float = 2.0) -> UpstreamResponse:
    return await client.request(
        "POST", "/chat/completions", HEADERS, body, connect_timeout=connect, first_byte_timeout=2.0
    )


async def chat(client: HttpClient) -> dict[str, Any]:
    resp = await send(client)
    assert resp.status == 200
    answer: dict[str, Any] = orjson.loads(await resp.read(2.0))
    return answer


async def stream(client: HttpClient) -> bytes:
    resp = await send(client, STREAM)
    assert resp.status == 200 and resp.header("content-type") == "text/event-stream"
    chunks = []
    while (chunk := await resp.next_chunk(2.0)) is not None:
        chunks.append(chunk)
    return b"".join(chunks)


async def failure(client: HttpClient, connect: float = 2.0) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as info:
        resp = await send(client, connect=connect)
        await resp.read(2.0)
    return info.value


def ca(pki: Pki, **more: Any) -> ssl.SSLContext:
    return tls_context(TlsOptions(ca_file=str(pki.ca), **more))


# -- the upstream client: TLS ------------------------------------------------------------------


async def test_a_ca_file_trusts_a_private_upstream_for_requests_and_streams(
    front: TlsFront, pki: Pki
) -> None:
    client = HttpClient(front.url(), tls=ca(pki))
    try:
        assert (await chat(client))["object"] == "chat.completion"
        assert (await stream(client)).endswith(b"data: [DONE]\n\n")
        assert (await chat(client))["choices"]
        assert front.connections == 1  # one handshake, then keep-alive
        assert client.idle_connections == 1
    finally:
        await client.close()


async def test_the_ca_file_adds_to_the_system_store_it_does_not_trust_anything(
    front: TlsFront, pki: Pki
) -> None:
    for tls in (None, tls_context(TlsOptions(ca_file=str(pki.other_ca)))):
        client = HttpClient(front.url(), tls=tls)
        try:
            error = await failure(client)
        finally:
            await client.close()
        assert error.kind is FailureKind.CONNECT
        assert error.message.startswith(
            f"could not connect to 127.0.0.1:{front.port}: TLS certificate not accepted"
        )
        assert "tls.ca_file" in error.message and "Traceback" not in error.message


async def test_verify_false_accepts_any_certificate(front: TlsFront) -> None:
    client = HttpClient(front.url(), tls=tls_context(TlsOptions(verify=False)))
    try:
        assert (await stream(client)).endswith(b"data: [DONE]\n\n")
    finally:
        await client.close()


async def test_a_client_certificate_for_an_upstream_that_requires_one(mtls_front: TlsFront, pki: Pki) -> None:
    for tls in (
        ca(pki, client_cert=str(pki.client_cert), client_key=str(pki.client_key)),
        ca(pki, client_cert=str(pki.client_combined)),  # the key inside the certificate's file
    ):
        client = HttpClient(mtls_front.url(), tls=tls)
        try:
            assert (await stream(client)).endswith(b"data: [DONE]\n\n")
        finally:
            await client.close()
    client = HttpClient(mtls_front.url(), tls=ca(pki))
    try:
        error = await failure(client)
    finally:
        await client.close()
    # TLS 1.3: the upstream refuses after the client's side of the handshake is done, so the
    # failure is a connection closed before any answer (a typed failure, failed over), not a hang.
    assert error.kind in (FailureKind.RESET, FailureKind.CONNECT), error.message


# -- the upstream client: the proxy -----------------------------------------------------------


async def test_a_keep_alive_series_goes_through_one_authenticated_tunnel(
    front: TlsFront, proxy: ConnectProxy, pki: Pki
) -> None:
    client = HttpClient(front.url(), tls=ca(pki), proxy=parse_proxy(proxy.url(userinfo=USERINFO)))
    try:
        await chat(client)
        assert (await stream(client)).endswith(b"data: [DONE]\n\n")
        await chat(client)
    finally:
        await client.close()
    assert proxy.tunnels == 1 and front.connections == 1
    ((line, headers),) = proxy.requests
    target = f"127.0.0.1:{front.port}"
    assert line == f"CONNECT {target} HTTP/1.1" and headers["host"] == target
    assert headers["proxy-authorization"].startswith("Basic ")  # the proxy checked it against PASSWORD


async def test_a_plain_http_upstream_through_the_tunnel(fake: FakeUpstream, proxy: ConnectProxy) -> None:
    client = HttpClient(fake.openai_base_url, proxy=parse_proxy(proxy.url(userinfo=USERINFO)))
    try:
        assert (await stream(client)).endswith(b"data: [DONE]\n\n")
    finally:
        await client.close()
    assert proxy.tunnels == 1 and len(fake.attempts) == 1


async def test_an_https_proxy_tls_to_the_proxy_then_tls_to_the_upstream(front: TlsFront, pki: Pki) -> None:
    https_proxy = await ConnectProxy().start(pki.server_context())
    client = HttpClient(front.url(), tls=ca(pki), proxy=parse_proxy(https_proxy.url("https")))
    try:
        assert (await stream(client)).endswith(b"data: [DONE]\n\n")
        assert https_proxy.tunnels == 1
    finally:
        await client.close()
        await https_proxy.close()


@pytest.mark.parametrize(
    ("userinfo", "refuse", "expected"),
    [
        (
            "",
            None,
            "407 Proxy Authentication Required (it wants credentials: user:password@ in the proxy URL)",
        ),
        (
            "corp-user:wrong-Pa55word",
            None,
            "407 Proxy Authentication Required (check the proxy's user:password@",
        ),
        (USERINFO, 403, "403 Forbidden By Policy"),
    ],
)
async def test_a_refused_connect_is_a_connect_failure_naming_the_proxy_status(
    front: TlsFront, proxy: ConnectProxy, pki: Pki, userinfo: str, refuse: int | None, expected: str
) -> None:
    proxy.refuse = refuse
    client = HttpClient(front.url(), tls=ca(pki), proxy=parse_proxy(proxy.url(userinfo=userinfo)))
    try:
        error = await failure(client)
    finally:
        await client.close()
    assert error.kind is FailureKind.CONNECT
    prefix = f"proxy http://127.0.0.1:{proxy.port} refused CONNECT to 127.0.0.1:{front.port}: "
    assert error.message.startswith(prefix + expected), error.message
    for secret in (PASSWORD, "wrong-Pa55word", "corp-user", "s3cret"):
        assert secret not in error.message and secret not in repr(client._proxy)
    assert front.connections == 0


async def test_a_reason_phrase_that_quotes_the_credentials_is_dropped(
    front: TlsFront, proxy: ConnectProxy, pki: Pki
) -> None:
    proxy.refuse, proxy.reason = 403, f"no entry for corp-user:{PASSWORD}"
    client = HttpClient(front.url(), tls=ca(pki), proxy=parse_proxy(proxy.url(userinfo=USERINFO)))
    try:
        error = await failure(client)
    finally:
        await client.close()
    assert error.message.endswith(f"refused CONNECT to 127.0.0.1:{front.port}: 403"), error.message


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
            "answered CONNECT with something other than an HTTP/1.x status line",
        ),
        (b"", "closed the connection before answering CONNECT"),
        (
            b"HTTP/1.1 200 OK\r\n\r\nhello",
            "sent bytes after its answer to CONNECT, before the upstream spoke",
        ),
        (
            b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"a" * 20000,
            "answered CONNECT with over 16384 bytes of headers",
        ),
    ],
)
async def test_a_proxy_that_does_not_speak_connect(
    front: TlsFront, pki: Pki, answer: bytes, expected: str
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        if answer:  # held open until the client, having decided, closes it
            await asyncio.wait_for(reader.read(), 5.0)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    address = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    client = HttpClient(front.url(), tls=ca(pki), proxy=parse_proxy(address))
    try:
        error = await failure(client)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    assert error.kind is FailureKind.CONNECT
    assert error.message == f"proxy {address} {expected}"
    assert front.connections == 0


async def test_a_proxy_that_is_down_or_silent(front: TlsFront, pki: Pki) -> None:
    port = free_port()
    client = HttpClient(front.url(), tls=ca(pki), proxy=parse_proxy(f"http://127.0.0.1:{port}"))
    try:
        error = await failure(client)
    finally:
        await client.close()
    assert error.kind is FailureKind.CONNECT
    assert error.message.startswith(f"could not connect to proxy http://127.0.0.1:{port}: ")
    with socket.socket() as silent:  # accepts (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = HttpClient(front.url(), tls=ca(pki), proxy=parse_proxy(address))
        started = asyncio.get_running_loop().time()
        try:
            error = await failure(client, connect=0.3)
        finally:
            await client.close()
    assert error.kind is FailureKind.CONNECT_TIMEOUT
    assert error.message == f"could not connect to 127.0.0.1:{front.port} through proxy {address} within 0.3s"
    assert asyncio.get_running_loop().time() - started < 2.0


# -- proxy URLs and TLS files (pure) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("http://proxy.corp.example:3128", Proxy("http", "proxy.corp.example", 3128)),
        ("http://proxy.corp.example", Proxy("http", "proxy.corp.example", 80)),
        ("https://proxy.corp.example/", Proxy("https", "proxy.corp.example", 443)),
        ("http://u:p%40ss@10.0.0.1:8080", Proxy("http", "10.0.0.1", 8080, "u:p@ss")),
        ("http://only-user@[::1]:3128", Proxy("http", "::1", 3128, "only-user:")),
    ],
)
def test_proxy_urls(url: str, parsed: Proxy) -> None:
    proxy = parse_proxy(url)
    assert proxy == parsed and proxy.credentials == parsed.credentials
    assert "@" not in proxy.address and "p@ss" not in repr(proxy)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("socks5://u:TopSecret1@proxy:1080", "scheme socks5:// is not supported: http:// or https://"),
        ("proxy.corp.example:3128", "is not supported: http:// or https://"),
        ("http://u:TopSecret1@:3128", "has no host"),
        ("http://u:TopSecret1@proxy:3128/path", "takes no path"),
        ("http://u:TopSecret1@proxy:99999", "not a valid URL"),
    ],
)
def test_bad_proxy_urls_never_quote_the_url(url: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_proxy(url)
    assert fragment in str(info.value) and "TopSecret1" not in str(info.value)


def _tls_cases(pki: Pki, tmp: Path) -> list[tuple[TlsOptions, str, str]]:
    (tmp / "junk.pem").write_text("not a certificate\n")
    (tmp / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    missing = str(tmp / "missing.pem")
    return [
        (TlsOptions(ca_file=missing), "ca_file", f"cannot read {missing}: No such file or directory"),
        (TlsOptions(ca_file=str(tmp)), "ca_file", f"cannot read {tmp}: Is a directory"),
        (TlsOptions(ca_file=str(tmp / "junk.pem")), "ca_file", "no PEM certificate in"),
        (TlsOptions(ca_file=str(tmp / "broken.pem")), "ca_file", "not a valid PEM certificate bundle"),
        (TlsOptions(client_cert=str(pki.client_cert)), "client_cert", "no PEM private key in"),
        (TlsOptions(client_cert=str(pki.client_key)), "client_cert", "no PEM certificate in"),
        (
            TlsOptions(client_cert=str(pki.client_cert), client_key=missing),
            "client_key",
            "cannot read",
        ),
        (
            TlsOptions(client_cert=str(pki.client_cert), client_key=str(pki.server_key)),
            "client_key",
            "do not load together",
        ),
        (
            TlsOptions(client_cert=str(pki.client_cert), client_key=str(pki.encrypted_key)),
            "client_key",
            "is encrypted; a passphrase is not supported",
        ),
        (TlsOptions(client_key=str(pki.client_key)), "client_key", "needs client_cert"),
    ]


def test_tls_files_that_cannot_be_used_name_their_setting(pki: Pki, tmp_path: Path) -> None:
    for options, key, fragment in _tls_cases(pki, tmp_path):
        with pytest.raises(TlsSetupError) as info:
            tls_context(options)
        assert (info.value.key, fragment in str(info.value)) == (key, True), (options, str(info.value))


def test_a_tls_context_of_the_settings() -> None:
    strict = tls_context(TlsOptions())
    assert strict.verify_mode is ssl.CERT_REQUIRED and strict.check_hostname
    lax = tls_context(TlsOptions(verify=False))
    assert lax.verify_mode is ssl.CERT_NONE and not lax.check_hostname


# -- the config --------------------------------------------------------------------------------


def provider_config(**extra: Any) -> dict[str, Any]:
    return {
        "providers": {"corp": {"protocol": "openai", "base_url": "https://llm.corp.example/v1", **extra}},
        "models": {"m": {"routes": [{"provider": "corp", "model": "x"}]}},
    }


def test_the_tls_and_proxy_settings_load(pki: Pki) -> None:
    settings = parse_settings(
        provider_config(
            tls={"ca_file": str(pki.ca), "client_cert": str(pki.client_cert), "client_key": "${KEY_FILE}"},
            proxy="http://${PROXY_USER}:${PROXY_PASSWORD}@proxy.corp.example:3128",
        ),
        # URL syntax: a password with reserved characters is percent-encoded, in the variable too
        env={"KEY_FILE": str(pki.client_key), "PROXY_USER": "corp-user", "PROXY_PASSWORD": USERINFO[10:]},
    )
    corp = settings.providers["corp"]
    assert corp.tls.ca_file == str(pki.ca) and corp.tls.client_key == str(pki.client_key)
    assert corp.tls.verify and len(corp.tls.digest) == 64
    assert corp.proxy == Proxy("http", "proxy.corp.example", 3128, f"corp-user:{PASSWORD}")
    assert PASSWORD not in repr(settings)
    plain = parse_settings(provider_config(), env={}).providers["corp"]
    assert plain.tls == TlsOptions() and plain.proxy is None


def test_config_errors_name_the_key(pki: Pki, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    (tmp_path / "junk.pem").write_text("junk")
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"tls": {"ca_file": missing}},
            f"providers.corp.tls.ca_file: cannot read {missing}: No such file or directory",
        ),
        (
            {"tls": {"ca_file": str(tmp_path / "junk.pem")}},
            "providers.corp.tls.ca_file: no PEM certificate in",
        ),
        (
            {"tls": {"client_cert": str(tmp_path / "junk.pem")}},
            "providers.corp.tls.client_cert: no PEM certificate",
        ),
        (
            {"tls": {"client_cert": str(pki.client_cert), "client_key": str(pki.server_key)}},
            "providers.corp.tls.client_key: the certificate in",
        ),
        ({"tls": {"cafile": str(pki.ca)}}, "providers.corp.tls.cafile: unknown key (allowed here: ca_file, "),
        ({"tls": {"verify": "no"}}, "providers.corp.tls.verify: expected true or false"),
        (
            {"tls": {"verify": False, "ca_file": str(pki.ca)}},
            "providers.corp.tls.ca_file: has no effect with verify",
        ),
        ({"tls": "strict"}, "providers.corp.tls: expected a mapping"),
        (
            {"proxy": "socks5://u:TopSecret1@proxy:1080"},
            "providers.corp.proxy: the proxy URL's scheme socks5:// is not supported",
        ),
        ({"proxy": "http://u:TopSecret1@proxy:3128/x"}, "providers.corp.proxy: the proxy URL takes no path"),
        ({"proxy": 3128}, "providers.corp.proxy: expected a non-empty string"),
    ]
    for extra, starts in cases:
        with pytest.raises(ConfigError) as info:
            parse_settings(provider_config(**extra), env={})
        assert str(info.value).startswith(starts), (extra, str(info.value))
        assert "TopSecret1" not in str(info.value)


def test_tls_settings_on_a_provider_that_speaks_no_tls(pki: Pki) -> None:
    config = provider_config(tls={"ca_file": str(pki.ca)})
    config["providers"]["corp"]["base_url"] = "http://llm.corp.example/v1"
    with pytest.raises(ConfigError, match=r"^providers\.corp\.tls: the provider speaks no TLS"):
        parse_settings(config, env={})
    config["providers"]["corp"]["proxy"] = "https://proxy.corp.example:3129"  # TLS to the proxy
    assert parse_settings(config, env={}).providers["corp"].tls.ca_file == str(pki.ca)
    config["providers"]["corp"]["tls"] = {"verify": True}  # the defaults, said out loud: fine anywhere
    del config["providers"]["corp"]["proxy"]
    assert parse_settings(config, env={}).providers["corp"].tls == TlsOptions()


async def test_verify_false_warns_at_every_load_and_reload(
    tmp_path: Path, fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="spillgate.config")
    config = provider_config(tls={"verify": False})
    config["listen"] = "127.0.0.1:0"
    path = tmp_path / "spillgate.yaml"
    path.write_text(yaml.safe_dump(config))
    app = App(load_settings(path, env={}))
    await app.start()
    try:
        await app.reload()
    finally:
        await app.stop(grace=1)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "spillgate.config"
    ]
    assert len(warnings) == 2, warnings
    assert all(
        w.startswith(
            "providers.corp.tls.verify is false: TLS certificates and host names of provider corp are NOT"
        )
        and "llm.corp.example" in w
        for w in warnings
    )


async def test_a_changed_tls_or_proxy_setting_makes_a_new_pool(pki: Pki, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(pki.ca.read_bytes())

    def settings(**extra: Any) -> Settings:
        return parse_settings(provider_config(**extra), env={})

    pools = Pools(http_transport)
    first = pools.for_settings(settings(tls={"ca_file": str(ca_file)}))["corp"]
    assert pools.for_settings(settings(tls={"ca_file": str(ca_file)}))["corp"] is first  # unchanged: kept
    ca_file.write_bytes(pki.ca.read_bytes() + pki.other_ca.read_bytes())  # rotated at the same path
    second = pools.for_settings(settings(tls={"ca_file": str(ca_file)}))["corp"]
    assert second is not first
    third = pools.for_settings(settings(tls={"ca_file": str(ca_file)}, proxy="http://p.example:3128"))["corp"]
    assert third is not second
    fourth = pools.for_settings(settings(tls={"ca_file": str(ca_file)}, proxy="http://u:x@p.example:3128"))
    assert fourth["corp"] is not third  # new credentials: new tunnels
    for client in (first, second, third, fourth["corp"]):
        await client.close()


# -- through a running gateway ----------------------------------------------------------------


def gateway_config(providers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "listen": "127.0.0.1:0",
        "providers": {
            name: {"protocol": "openai", "api_key": f"sk-{name}", "timeouts": TIMEOUTS, **p}
            for name, p in providers.items()
        },
        "models": {"coder": {"routes": [{"provider": name, "model": f"up-{name}"} for name in providers]}},
        "resilience": {"max_attempts": 3, "deadline": "8s", "backoff": {"base": "50ms", "cap": "100ms"}},
    }


async def gateway(fake: FakeUpstream, config: dict[str, Any]) -> Scenario:
    return await start_scenario(fake, config)


async def stop(sc: Scenario) -> None:
    await sc.http.close()
    await sc.app.stop(grace=1)


async def test_gateway_a_private_upstream_with_its_ca(front: TlsFront, pki: Pki, fake: FakeUpstream) -> None:
    sc = await gateway(
        fake, gateway_config({"corp": {"base_url": front.url(), "tls": {"ca_file": str(pki.ca)}}})
    )
    try:
        answer = await sc.ask("chat")
        assert answer.status == 200 and answer.text("chat", stream=False), answer.reply.body
        streamed = await sc.ask("chat", stream=True)
        assert streamed.status == 200 and streamed.ended_normally("chat")
        assert [a.model for a in fake.attempts] == ["up-corp", "up-corp"]
    finally:
        await stop(sc)


async def test_gateway_without_the_ca_answers_its_error_json(
    front: TlsFront, fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    sc = await gateway(fake, gateway_config({"corp": {"base_url": front.url()}}))
    try:
        result = await sc.ask("chat")
    finally:
        await stop(sc)
    assert result.status == 502
    message = result.reply.json()["error"]["message"]
    assert "TLS certificate not accepted: unable to get local issuer certificate" in message
    assert "Traceback" not in result.reply.body.decode()
    assert sc.app.gateway.classifier.hits["builtin.connect_failed"] >= 1
    assert not fake.attempts  # nothing reached the upstream
    assert "Traceback" not in caplog.text


async def test_gateway_verify_false(
    front: TlsFront, fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="spillgate.config")
    sc = await gateway(fake, gateway_config({"lax": {"base_url": front.url(), "tls": {"verify": False}}}))
    try:
        assert (await sc.ask("chat", stream=True)).ended_normally("chat")
    finally:
        await stop(sc)
    assert (
        "providers.lax.tls.verify is false" in caplog.text and "provider lax are NOT checked" in caplog.text
    )


async def test_gateway_mutual_tls(mtls_front: TlsFront, pki: Pki, fake: FakeUpstream) -> None:
    tls = {"ca_file": str(pki.ca), "client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
    sc = await gateway(fake, gateway_config({"corp": {"base_url": mtls_front.url(), "tls": tls}}))
    try:
        assert (await sc.ask("chat", stream=True)).ended_normally("chat")
    finally:
        await stop(sc)
    sc = await gateway(
        fake, gateway_config({"corp": {"base_url": mtls_front.url(), "tls": {"ca_file": str(pki.ca)}}})
    )
    try:
        result = await sc.ask("chat")
    finally:
        await stop(sc)
    assert (
        result.status == 502
        and "closed before the response headers" in result.reply.json()["error"]["message"]
    )


async def test_gateway_through_the_proxy_credentials_never_shown(
    front: TlsFront, proxy: ConnectProxy, pki: Pki, fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream = {"base_url": front.url(), "tls": {"ca_file": str(pki.ca)}}
    sc = await gateway(fake, gateway_config({"corp": {**upstream, "proxy": proxy.url(userinfo=USERINFO)}}))
    try:
        for stream_it in (False, True, False, True):
            result = await sc.ask("chat", stream=stream_it)
            assert result.status == 200, result.reply.body
        assert proxy.tunnels == 1  # one tunnel, kept alive for the series
    finally:
        await stop(sc)
    wrong = USERINFO.replace("s3cret", "wrong")
    sc = await gateway(fake, gateway_config({"corp": {**upstream, "proxy": proxy.url(userinfo=wrong)}}))
    try:
        refused = await sc.ask("chat")
        health = await sc.http.get(sc.app.url + "/admin/health")
        shown = await health.text()
    finally:
        await stop(sc)
    assert refused.status == 502
    assert "refused CONNECT" in refused.reply.json()["error"]["message"]
    assert "407 Proxy Authentication Required" in refused.reply.json()["error"]["message"]
    assert proxy.tunnels == 1 and len(proxy.requests) == 2
    for text in (caplog.text, refused.reply.body.decode(), str(refused.reply.headers), shown):
        for secret in (PASSWORD, "s3cret", "wrong%2FPa", "wrong/Pa", "%3Ass%40word"):
            assert secret not in text


async def test_gateway_fails_over_from_a_provider_whose_proxy_is_down(
    front: TlsFront, pki: Pki, fake: FakeUpstream
) -> None:
    tls = {"ca_file": str(pki.ca)}
    down = f"http://127.0.0.1:{free_port()}"
    sc = await gateway(
        fake,
        gateway_config(
            {
                "behind": {"base_url": front.url(), "tls": tls, "proxy": down},
                "direct": {"base_url": front.url(), "tls": tls},
            }
        ),
    )
    try:
        result = await sc.ask("chat", stream=True)
    finally:
        await stop(sc)
    assert result.status == 200 and result.ended_normally("chat")
    assert result.header("x-spillgate-route") == "coder[1]"
    assert [a.model for a in fake.attempts] == ["up-direct"]
    assert sc.app.gateway.classifier.hits["builtin.connect_failed"] == 1
