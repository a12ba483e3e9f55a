"""``spillgate doctor --alias demo`` against a running demo (``spillgate serve`` with no config): the
demo publishes its fake upstream's address, the doctor reads it and probes the demo's routes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import orjson
import pytest

from spillgate.app import App, _start_demo_upstream
from spillgate.config.defaults import DEMO_MODEL, demo_settings
from spillgate.doctor.command import UsageError, add_parser, build_target
from spillgate.doctor.demo import DEMO_FILE_ENV, DemoAddress, demo_file, parse_address, running_demo
from spillgate.doctor.runner import run_doctor
from spillgate.doctor.target import AliasTarget
from spillgate.doctor.types import Category

from .helpers import cli

GOOD = {
    "gateway": "http://127.0.0.1:8080",
    "openai_base_url": "http://127.0.0.1:40123/v1",
    "anthropic_base_url": "http://127.0.0.1:40123",
    "pid": 4242,
}

ADDRESS_CASES: dict[str, tuple[object, bool]] = {
    "the demo's own record": (GOOD, True),
    "localhost and ::1 are loopback too": (
        {**GOOD, "openai_base_url": "http://localhost:1/v1", "anthropic_base_url": "http://[::1]:1"},
        True,
    ),
    "a remote host is never probed from a file": (
        {**GOOD, "openai_base_url": "http://api.example:80/v1"},
        False,
    ),
    "https is not the demo": ({**GOOD, "anthropic_base_url": "https://127.0.0.1:443"}, False),
    "a URL without a port": ({**GOOD, "gateway": "http://127.0.0.1"}, False),
    "no pid": ({k: v for k, v in GOOD.items() if k != "pid"}, False),
    "a pid that names no process": ({**GOOD, "pid": 0}, False),
    "a URL that is not text": ({**GOOD, "openai_base_url": 5}, False),
    "not an object": ([GOOD], False),
}


@pytest.mark.parametrize(("raw", "accepted"), ADDRESS_CASES.values(), ids=ADDRESS_CASES.keys())
def test_parse_address(raw: object, accepted: bool) -> None:
    address = parse_address(orjson.dumps(raw))
    assert (address is not None) is accepted
    if address is not None:
        assert parse_address(address.to_json()) == address


def test_parse_address_of_a_damaged_file() -> None:
    assert parse_address(b"{not json") is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({DEMO_FILE_ENV: "/x/demo.json", "XDG_RUNTIME_DIR": "/run/user/1"}, "/x/demo.json"),
        ({"XDG_RUNTIME_DIR": "/run/user/1"}, "/run/user/1/spillgate-demo.json"),
    ],
)
def test_demo_file(env: dict[str, str], expected: str) -> None:
    assert demo_file(env) == Path(expected)


def test_demo_file_defaults_to_one_per_user_in_the_temp_directory() -> None:
    assert demo_file({}).name.startswith("spillgate-demo-")


def test_a_stale_record_is_no_running_demo(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    env = {DEMO_FILE_ENV: str(path)}
    assert running_demo(env) is None  # no file
    path.write_bytes(orjson.dumps({**GOOD, "pid": os.getpid()}))
    assert running_demo(env) is not None
    path.write_bytes(orjson.dumps({**GOOD, "pid": 2**22 + 12345}))  # above any pid_max: no such process
    assert running_demo(env) is None


def alias_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["doctor", *argv])


async def start_demo(env: dict[str, str]) -> App:
    """The demo as ``spillgate serve`` runs it with no config (no usage store, any free port)."""
    upstream = await _start_demo_upstream()
    settings = demo_settings(upstream.openai_base_url, upstream.anthropic_base_url)
    settings = dataclasses.replace(settings, port=0, usage_dsn=None)
    app = App(settings, demo_upstream=upstream, env=env)
    await app.start()
    return app


async def test_doctor_alias_demo_probes_the_running_demo(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    env = {DEMO_FILE_ENV: str(path)}
    with pytest.raises(UsageError, match="or a running demo"):
        build_target(alias_args("--alias", DEMO_MODEL), env)
    app = await start_demo(env)
    try:
        published = parse_address(path.read_bytes())
        assert published is not None and published.gateway == app.url
        target = build_target(alias_args("--alias", DEMO_MODEL), env).target
        assert isinstance(target, AliasTarget) and target.source == f"the running demo at {app.url}"
        report = await run_doctor(target, timeout=3)
        code, out, _err = await cli("--alias", DEMO_MODEL, "--quiet", "--json", env=env)
    finally:
        await app.stop(grace=1)
    d = report.diagnosis
    assert d.category is Category.MODEL_CAPACITY, d.summary
    assert d.summary.startswith("Route demo[0] (demo-at-capacity at provider demo-openai) is at capacity")
    assert d.answered == ("demo[1]", "demo[3]")
    assert code == 1 and json.loads(out)["answered"] == ["demo[1]", "demo[3]"]
    assert not path.exists(), "a stopped demo withdraws its address"
    with pytest.raises(UsageError):
        build_target(alias_args("--alias", DEMO_MODEL), env)


async def test_a_stopping_demo_leaves_a_newer_demos_address(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    env = {DEMO_FILE_ENV: str(path)}
    first = await start_demo(env)
    second = await start_demo(env)
    await first.stop(grace=1)
    try:
        address = parse_address(path.read_bytes())
        assert isinstance(address, DemoAddress) and address.gateway == second.url
    finally:
        await second.stop(grace=1)
    assert not path.exists()
