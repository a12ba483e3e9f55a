"""CPU time per request through the gateway, immune to CPU steal (``time.process_time`` is not
charged for time the hypervisor takes): the fake upstream, the gateway and an aiohttp client in
one event loop, requests one at a time, plain and streamed chat. For A/B runs of two commits on
a noisy machine (``bench/README.md``): ``python -m bench.cpu_per_request 3000`` in each checkout,
alternated; the client's and the fake's share is the same in both, so the difference is the
gateway's.

``--translation responses-chat`` (or ``messages-chat``) measures instead, in the same process
and the same run, a Responses (Messages) client served by a chat-only upstream through
translation against the native route of the same client API, alternating in blocks. The fake
then runs in a child process: it writes Chat chunks for one side and Responses (Messages) events
for the other, so its share would differ; the process's CPU is the gateway's and the client's,
and the client reads the same API on both sides. Figures per request (non-streaming, streamed
with the fake's short answer and with a long one) and per streamed event: the slope between the
two stream lengths, ``(CPU per long stream - CPU per short stream) / (events per long stream -
events per short stream)``, which leaves out what a stream costs once (the request's own
translation, the connection's work).

``--pricing`` measures, in the same process and the same run, two gateways on one fake upstream:
pricing on (the upstream model ``gpt-4o-mini``, which genai-prices knows: every request costed,
the streams from estimated tokens, as the fake reports no usage in a Chat stream) and
``pricing: off``, metrics on in both, alternating in blocks (ABBA): what pricing costs in CPU, a
figure that neither CPU steal nor the queueing of a saturated core inflates.

Usage: ``python -m bench.cpu_per_request [REQUESTS] [--translation responses-chat|messages-chat]``
or ``python -m bench.cpu_per_request [REQUESTS] --pricing``."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import orjson
import uvloop

from spillgate.app import App
from spillgate.config.loader import parse_settings
from spillgate.fake import FakeUpstream, Fault

WARMUP = 200
PATH = "/v1/chat/completions"
HEADERS = {"content-type": "application/json"}

# --translation
TRANSLATIONS = ("responses-chat", "messages-chat")
BLOCKS = 6
"""Each side's requests are measured in this many blocks, native and translated alternating
(ABBA), so drift falls on both alike; a figure is the median over blocks."""
LONG_TEXT = "def strip_lines(path):\n    with open(path) as f:\n        return [l.rstrip() for l in f]\n" * 8
LONG_CHUNKS = 64
"""The long answer: 64 deltas (the fake's default answer has 5)."""
TARGET_ADDED_PER_EVENT_US = 15.0
CLIENT_PATHS = {"responses": "/v1/responses", "messages": "/v1/messages"}
FAKE_MODELS = {
    "native": Fault(),
    "native-long": Fault(text=LONG_TEXT, chunks=LONG_CHUNKS),
    "chat": Fault(apis=("chat",)),
    "chat-long": Fault(apis=("chat",), text=LONG_TEXT, chunks=LONG_CHUNKS),
}
"""The fake's upstream models: each side's short and long answer (the chat-only ones 404 any
other API, so a request that was not translated fails)."""


async def measure(requests: int) -> dict[str, float]:
    """Microseconds of process CPU per request, plain and streamed."""
    fake = FakeUpstream()
    await fake.start("127.0.0.1", 0)
    config = {
        "listen": "127.0.0.1:0",
        "providers": {"oa": {"protocol": "openai", "base_url": fake.openai_base_url, "api_key": "sk-bench"}},
        "models": {"coder": {"routes": [{"provider": "oa", "model": "m"}]}},
    }
    app = App(parse_settings(config, env={}, source="test"))
    await app.start()
    figures: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for stream in (False, True):
                body = orjson.dumps(
                    {"model": "coder", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
                )
                for _ in range(WARMUP):
                    async with http.post(app.url + PATH, data=body, headers=HEADERS) as reply:
                        await reply.read()
                started = time.process_time()
                for _ in range(requests):
                    async with http.post(app.url + PATH, data=body, headers=HEADERS) as reply:
                        await reply.read()
                        if reply.status != 200:
                            raise SystemExit(f"the gateway answered {reply.status}: {await reply.text()}")
                figures["stream" if stream else "plain"] = 1e6 * (time.process_time() - started) / requests
    finally:
        await app.stop()
        await fake.close()
    return figures


# --------------------------------------------------------------------------------------------
# --pricing
# --------------------------------------------------------------------------------------------
PRICING_SIDES = ("on", "off")


async def measure_pricing(requests: int) -> dict[tuple[str, str], list[float]]:
    """(side, kind) -> microseconds of process CPU per request in each block."""
    fake = FakeUpstream()
    await fake.start("127.0.0.1", 0)
    apps: dict[str, App] = {}
    per_block = max(1, requests // BLOCKS)
    blocks: dict[tuple[str, str], list[float]] = {
        (s, k): [] for s in PRICING_SIDES for k in ("plain", "stream")
    }
    try:
        for side in PRICING_SIDES:
            config: dict[str, Any] = {
                "listen": "127.0.0.1:0",
                "providers": {
                    "oa": {"protocol": "openai", "base_url": fake.openai_base_url, "api_key": "sk"}
                },
                "models": {"coder": {"routes": [{"provider": "oa", "model": "gpt-4o-mini"}]}},
            }
            if side == "off":
                config["pricing"] = "off"
            apps[side] = App(parse_settings(config, env={}, source="bench"))
            await apps[side].start()
        async with aiohttp.ClientSession() as http:
            bodies = {
                kind: orjson.dumps(
                    {
                        "model": "coder",
                        "stream": kind == "stream",
                        "messages": [{"role": "user", "content": "hi"}],
                    }
                )
                for kind in ("plain", "stream")
            }
            for side in PRICING_SIDES:
                for body in bodies.values():
                    await _post(http, apps[side].url + PATH, body, WARMUP)
            for block in range(BLOCKS):
                order = PRICING_SIDES if block % 2 == 0 else PRICING_SIDES[::-1]
                for side in order:
                    for kind, body in bodies.items():
                        started = time.process_time()
                        await _post(http, apps[side].url + PATH, body, per_block)
                        blocks[(side, kind)].append(1e6 * (time.process_time() - started) / per_block)
    finally:
        for app in apps.values():
            await app.stop()
        await fake.close()
    return blocks


async def _post(http: aiohttp.ClientSession, url: str, body: bytes, n: int) -> None:
    for _ in range(n):
        async with http.post(url, data=body, headers=HEADERS) as reply:
            await reply.read()
            if reply.status != 200:
                raise SystemExit(f"the gateway answered {reply.status}: {await reply.text()}")


def pricing_report(blocks: dict[tuple[str, str], list[float]], requests: int) -> str:
    lines = [f"pricing on against pricing: off, {BLOCKS} blocks of {max(1, requests // BLOCKS)} requests per "
             f"side and kind after {WARMUP} warm-up, alternating; median (min..max) over blocks"]  # fmt: skip
    for kind in ("plain", "stream"):
        on, off = blocks[("on", kind)], blocks[("off", kind)]
        m_on, m_off = statistics.median(on), statistics.median(off)
        lines.append(
            f"{kind:6s} cpu per request: pricing on {m_on:.1f} us ({min(on):.1f}..{max(on):.1f}), "
            f"off {m_off:.1f} us ({min(off):.1f}..{max(off):.1f}); added {m_on - m_off:+.1f} us "
            f"({(m_on - m_off) / m_off:+.1%})"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# --translation
# --------------------------------------------------------------------------------------------
def _serve_fake(conn: Connection) -> None:
    """The child process: the fake upstream with ``FAKE_MODELS``; sends its port, then serves
    until the parent stops it (or exits: the pipe closes)."""

    async def serve() -> None:
        fake = FakeUpstream(FAKE_MODELS, max_attempts=1000)
        await fake.start("127.0.0.1", 0)
        conn.send(fake.openai_base_url)
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:  # the parent closed its end (or exited)
            if not closed.done():
                closed.set_result(None)

        loop.add_reader(conn.fileno(), on_readable)
        try:
            await closed
        finally:
            loop.remove_reader(conn.fileno())
            await fake.close()

    uvloop.run(serve())


def translation_config(openai_base_url: str) -> dict[str, Any]:
    anthropic_base_url = openai_base_url.removesuffix("/v1")
    routes = {
        f"{side}{length}": [{"provider": provider, "model": f"{upstream}{length}"}]
        for side, provider, upstream in (
            ("responses-native", "oa", "native"),
            ("messages-native", "an", "native"),
            ("translated", "oa-chat", "chat"),
        )
        for length in ("", "-long")
    }
    return {
        "listen": "127.0.0.1:0",
        "providers": {
            "oa": {"protocol": "openai", "base_url": openai_base_url, "api_key": "sk-bench"},
            "an": {"protocol": "anthropic", "base_url": anthropic_base_url, "api_key": "sk-bench"},
            "oa-chat": {
                "protocol": "openai",
                "base_url": openai_base_url,
                "api_key": "sk-bench",
                "apis": ["chat"],
            },
        },
        "models": {name: {"routes": r} for name, r in routes.items()},
    }


def client_body(api: str, model: str, stream: bool) -> bytes:
    if api == "responses":
        return orjson.dumps({"model": model, "stream": stream, "input": "hi", "max_output_tokens": 1024})
    return orjson.dumps(
        {
            "model": model,
            "stream": stream,
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )


@dataclass(frozen=True)
class Kind:
    key: str
    stream: bool
    suffix: str
    """Appended to the model's name: "" for the short answer, "-long" for the long one."""


KINDS = (Kind("plain", False, ""), Kind("stream", True, ""), Kind("stream-long", True, "-long"))


@dataclass
class Block:
    """One block of requests on one side: process CPU seconds, requests, SSE events received."""

    cpu_s: float
    requests: int
    events: int

    @property
    def per_request_us(self) -> float:
        return 1e6 * self.cpu_s / self.requests

    @property
    def events_per_request(self) -> float:
        return self.events / self.requests


async def _run_block(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, requests: int
) -> Block:
    events = 0
    started = time.process_time()
    for _ in range(requests):
        async with http.post(url, data=body, headers=headers) as reply:
            data = await reply.read()
            if reply.status != 200:
                raise SystemExit(f"the gateway answered {reply.status}: {data[:500]!r}")
        events += data.count(b"\ndata:") + data.startswith(b"data:")
    return Block(time.process_time() - started, requests, events)


async def measure_translation(translation: str, requests: int) -> dict[str, dict[str, list[Block]]]:
    """Per kind and side ("native", "translated"), the blocks measured, alternating."""
    api = translation.removesuffix("-chat")
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    fake = ctx.Process(target=_serve_fake, args=(child,), daemon=True)
    fake.start()
    try:
        if not parent.poll(60):
            raise SystemExit("the fake upstream did not start")
        openai_base_url = parent.recv()
        app = App(parse_settings(translation_config(openai_base_url), env={}, source="test"))
        await app.start()
        try:
            url = app.url + CLIENT_PATHS[api]
            headers = {**HEADERS, **({"anthropic-version": "2023-06-01"} if api == "messages" else {})}
            models = {"native": f"{api}-native", "translated": "translated"}
            per_block = max(1, requests // BLOCKS)
            out: dict[str, dict[str, list[Block]]] = {k.key: {"native": [], "translated": []} for k in KINDS}
            async with aiohttp.ClientSession() as http:
                for kind in KINDS:
                    bodies = {
                        side: client_body(api, model + kind.suffix, kind.stream)
                        for side, model in models.items()
                    }
                    for side in models:  # warm-up, and a check that each side answers
                        await _run_block(http, url, headers, bodies[side], WARMUP)
                    for b in range(BLOCKS):
                        order = ("native", "translated") if b % 2 == 0 else ("translated", "native")
                        for side in order:
                            out[kind.key][side].append(
                                await _run_block(http, url, headers, bodies[side], per_block)
                            )
            return out
        finally:
            await app.stop()
    finally:
        parent.close()
        fake.join(10)
        if fake.is_alive():
            fake.kill()
            fake.join(10)


@dataclass(frozen=True)
class Sides:
    native: list[float]
    translated: list[float]

    @property
    def added(self) -> list[float]:
        return [t - n for n, t in zip(self.native, self.translated, strict=True)]

    def line(self, label: str, unit: str, decimals: int, target: float | None = None) -> str:
        added = self.added
        d = decimals
        text = (
            f"{label:34s} native {statistics.median(self.native):8.{d}f} {unit}  translated "
            f"{statistics.median(self.translated):8.{d}f} {unit}  added {statistics.median(added):+8.{d}f} "
            f"{unit} (blocks {min(added):+.{d}f}..{max(added):+.{d}f})"
        )
        if target is not None:
            verdict = "PASS" if statistics.median(added) <= target else "MISS"
            text += f"  target added <= {target:g} {unit}: {verdict}"
        return text


def translation_report(translation: str, blocks: dict[str, dict[str, list[Block]]], requests: int) -> str:
    def per_request(kind: str) -> Sides:
        return Sides(*([b.per_request_us for b in blocks[kind][side]] for side in ("native", "translated")))

    def events(kind: str) -> Sides:
        return Sides(
            *([b.events_per_request for b in blocks[kind][side]] for side in ("native", "translated"))
        )

    def per_event(side: str) -> list[float]:
        return [
            (long.per_request_us - short.per_request_us)
            / (long.events_per_request - short.events_per_request)
            for short, long in zip(blocks["stream"][side], blocks["stream-long"][side], strict=True)
        ]

    def once(side: str) -> list[float]:
        return [
            short.per_request_us - slope * short.events_per_request
            for short, slope in zip(blocks["stream"][side], per_event(side), strict=True)
        ]

    per_block = max(1, requests // BLOCKS)
    lines = [
        f"translation {translation}: process CPU (gateway + client; the fake in its own process), "
        f"{BLOCKS} blocks of {per_block} requests per side and kind after {WARMUP} warm-up, alternating; "
        "median over blocks",
        per_request("plain").line("plain cpu per request", "us", 0),
        per_request("stream").line("stream cpu per request", "us", 0),
        events("stream").line("stream events per request", "ev", 1),
        per_request("stream-long").line("stream-long cpu per request", "us", 0),
        events("stream-long").line("stream-long events per request", "ev", 1),
        Sides(per_event("native"), per_event("translated")).line(
            "stream cpu per event (slope)", "us", 2, TARGET_ADDED_PER_EVENT_US
        ),
        Sides(once("native"), once("translated")).line("stream cpu per stream, once", "us", 0),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "requests", nargs="?", type=int, default=3000, help="requests per kind (default 3000)"
    )
    parser.add_argument(
        "--translation",
        choices=TRANSLATIONS,
        help="measure a Responses (responses-chat) or Messages (messages-chat) client served by a "
        "chat-only upstream against the native route of the same client API: CPU per request and per "
        f"streamed event, translated minus native (target per event <= {TARGET_ADDED_PER_EVENT_US:g} us)",
    )
    parser.add_argument(
        "--pricing",
        action="store_true",
        help="CPU per request with pricing on against pricing: off (same process, alternating blocks)",
    )
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("requests must be at least 1")
    if args.pricing:
        print(pricing_report(uvloop.run(measure_pricing(args.requests)), args.requests))
        return
    if args.translation:
        blocks = uvloop.run(measure_translation(args.translation, args.requests))
        print(translation_report(args.translation, blocks, args.requests))
        return
    figures: dict[str, float] = uvloop.run(measure(args.requests))
    for kind, micros in figures.items():
        print(f"{kind:6s} cpu per request {micros:.0f} us ({args.requests} requests after {WARMUP} warm-up)")


if __name__ == "__main__":
    main()
