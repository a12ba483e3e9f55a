"""Rolling deploys: ``/healthz`` and ``/readyz``, and a SIGTERM that lets running streams finish.

The drain test runs ``spillgate serve`` as a real process (stopped by its PID) in front of the
fake upstream, whose answers stream slowly enough that 50 streams are all running when the
signal arrives.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import yaml

from spillgate.fake import FakeUpstream, Fault

from .harness import Harness, base_config, start_harness

STREAMS = 50
GRACE = 20.0
"""``limits.shutdown_grace`` of the drained instance: well above a stream's ~8 s (which the old
fixed 5 s grace cut short)."""


async def test_readyz_turns_not_ready_when_draining(fake: FakeUpstream) -> None:
    gw = await start_harness(fake, base_config(fake))
    try:
        await _readiness(gw)
    finally:
        await gw.http.close()
        await gw.app.stop(grace=1)


async def _readiness(gw: Harness) -> None:
    ready = await gw.call("/readyz", method="GET", key=None)
    assert ready.status == 200 and ready.json()["status"] == "ready"
    alive = await gw.call("/healthz", method="GET", key=None)
    assert alive.status == 200
    gw.app.drain()
    draining = await gw.call("/readyz", method="GET", key=None)
    assert draining.status == 503 and draining.json() == {"status": "draining"}
    assert (await gw.call("/healthz", method="GET", key=None)).status == 200, "alive while draining"


async def _stream(
    session: aiohttp.ClientSession, url: str, started: asyncio.Event, count: list[int]
) -> bytes:
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with session.post(url + "/v1/chat/completions", data=orjson.dumps(body)) as reply:
        assert reply.status == 200
        first = await reply.content.readany()
        count[0] += 1
        if count[0] == STREAMS:
            started.set()
        return first + await reply.read()


def _serve(config: Path) -> subprocess.Popen[str]:
    """``spillgate serve`` in its own process (stopped by its PID)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.Popen(
        [sys.executable, "-m", "spillgate", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


async def test_sigterm_lets_running_streams_finish_and_refuses_new_connections(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.set(
        "up-slow", Fault(text="one two three four five six seven eight nine ten", chunks=10, event_delay=0.6)
    )
    config = {
        "listen": "127.0.0.1:0",
        "providers": {"oa": {"protocol": "openai", "base_url": fake.openai_base_url}},
        "models": {"slow": {"routes": [{"provider": "oa", "model": "up-slow"}]}},
        "limits": {"shutdown_grace": f"{GRACE:g}s"},
        "usage": "off",
    }
    path = tmp_path / "spillgate.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = _serve(path)
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 20
        while url is None and time.monotonic() < deadline:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                break
            match = re.search(r"listening on (http://\S+)", line)
            url = match.group(1) if match else None
        assert url, "the gateway did not start"
        started, count = asyncio.Event(), [0]
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            streams = [asyncio.create_task(_stream(session, url, started, count)) for _ in range(STREAMS)]
            await asyncio.wait_for(started.wait(), 15)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            # No new connection is accepted once the signal is handled.
            refused = False
            for _ in range(50):
                try:
                    async with aiohttp.ClientSession() as fresh:
                        await fresh.get(url + "/readyz", timeout=aiohttp.ClientTimeout(total=1))
                except aiohttp.ClientConnectorError:
                    refused = True
                    break
                await asyncio.sleep(0.05)
            assert refused, "the draining instance still accepted connections"
            bodies = await asyncio.wait_for(asyncio.gather(*streams), GRACE)
        # Every stream completed: its whole answer and the normal terminator.
        for body in bodies:
            text = "".join(
                orjson.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                for line in body.decode().splitlines()
                if line.startswith("data: {") and b'"choices":[{' in line.encode()
            )
            assert text == "one two three four five six seven eight nine ten", body[-300:]
            assert body.rstrip().endswith(b"data: [DONE]")
        code = await asyncio.to_thread(proc.wait, GRACE)
        assert code == 0
        assert time.monotonic() - signalled < GRACE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
