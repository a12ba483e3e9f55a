"""CPU time per request through the gateway, immune to CPU steal (``time.process_time`` is not
charged for time the hypervisor takes): the fake upstream, the gateway and an aiohttp client in
one event loop, requests one at a time, plain and streamed chat. For A/B runs of two commits on
a noisy machine (``bench/README.md``): ``python -m bench.cpu_per_request 3000`` in each checkout,
alternated; the client's and the fake's share is the same in both, so the difference is the
gateway's.

Usage: ``python -m bench.cpu_per_request [REQUESTS]``."""

from __future__ import annotations

import argparse
import time

import aiohttp
import orjson
import uvloop

from spillgate.app import App
from spillgate.config.loader import parse_settings
from spillgate.fake import FakeUpstream

WARMUP = 200
PATH = "/v1/chat/completions"
HEADERS = {"content-type": "application/json"}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "requests", nargs="?", type=int, default=3000, help="requests per kind (default 3000)"
    )
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("requests must be at least 1")
    figures: dict[str, float] = uvloop.run(measure(args.requests))
    for kind, micros in figures.items():
        print(f"{kind:6s} cpu per request {micros:.0f} us ({args.requests} requests after {WARMUP} warm-up)")


if __name__ == "__main__":
    main()
