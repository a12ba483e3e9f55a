"""The command line as a user runs it: serve (demo and defaults), check, keys."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

SPILLGATE = [sys.executable, "-m", "spillgate"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "SPILLGATE_CONFIG")
    }
    env.update(extra)
    return env


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SPILLGATE, *args], capture_output=True, text=True, timeout=30, env=env or clean_env(), input=stdin
    )


def test_keys_hash_and_new() -> None:
    out = run("keys", "hash", "test")
    assert out.returncode == 0
    assert out.stdout.strip() == "sha256:" + hashlib.sha256(b"test").hexdigest()
    assert run("keys", "hash", stdin="test\n").stdout == out.stdout
    new = run("keys", "new").stdout
    key = re.search(r"key:\s+(\S+)", new)
    digest = re.search(r"hash:\s+(\S+)", new)
    assert key and digest and digest.group(1) == "sha256:" + hashlib.sha256(key.group(1).encode()).hexdigest()


def test_check_good_and_bad_config(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "providers:\n  openai: {protocol: openai, base_url: https://api.openai.com/v1}\n"
        "accounts:\n  - {id: oa-1, provider: openai, api_key: '${MY_KEY}'}\n"
        "models:\n  m: {routes: [{accounts: [oa-1], model: gpt-x}]}\n"
    )
    ok = run("check", "--config", str(good), env=clean_env(MY_KEY="sk-very-secret"))
    assert ok.returncode == 0, ok.stderr
    assert "account oa-1" in ok.stdout and "route m[0]" in ok.stdout
    assert "sk-very-secret" not in ok.stdout + ok.stderr
    missing = run("check", "--config", str(good))
    assert missing.returncode == 2
    assert "config error: accounts[0].api_key: environment variable MY_KEY is not set" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "providers:\n  openai: {protocol: openai, base_url: https://x}\n"
        "accounts:\n  - {id: a, provider: azure, api_key: k}\n"
    )
    failed = run("serve", "--config", str(bad))
    assert failed.returncode == 2
    assert "config error: accounts[0].provider: unknown provider 'azure' (known: openai)" in failed.stderr
    assert "Traceback" not in failed.stderr


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [*SPILLGATE, "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
        cwd=tmp_path,  # the embedded defaults record usage to ./spillgate-usage.db
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        url = None
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "".join(lines)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def post(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_serve_demo_mode_then_stop(demo_server: tuple[subprocess.Popen[str], str], tmp_path: Path) -> None:
    proc, url = demo_server
    status, body = post(
        url + "/v1/chat/completions", {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    )
    # The first route is at capacity; the gateway fails over to the healthy one.
    assert status == 200, body
    assert body["model"] == "demo-healthy"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Spillgate stopping" in out
    # The embedded defaults recorded the request and its two attempts in SQLite.
    with sqlite3.connect(tmp_path / "spillgate-usage.db") as conn:
        assert conn.execute("select count(*) from requests").fetchone()[0] == 1
        assert conn.execute("select count(*) from attempts").fetchone()[0] == 2


def test_serve_defaults_from_credentials(tmp_path: Path) -> None:
    env = clean_env(OPENAI_API_KEY="sk-openai-secret-value", ANTHROPIC_API_KEY="sk-ant-secret-value")
    proc = subprocess.Popen(
        [*SPILLGATE, "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 20
        seen = ""
        assert proc.stdout is not None
        while time.monotonic() < deadline and "ANTHROPIC_BASE_URL" not in seen:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert "settings: defaults" in seen
        assert "model * (any model name) -> openai:*, anthropic:*" in seen
        assert "secret-value" not in seen
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def _config(models: list[str]) -> str:
    routes = "".join(f"  {m}:\n    routes: [{{provider: up, model: x}}]\n" for m in models)
    return (
        "usage: off\nproviders:\n  up: {protocol: openai, base_url: 'http://127.0.0.1:9'}\nmodels:\n" + routes
    )


def _models(url: str) -> list[str]:
    with urllib.request.urlopen(url + "/v1/models", timeout=10) as resp:
        return [m["id"] for m in json.loads(resp.read())["data"]]


def test_serve_reloads_the_config_on_sighup(tmp_path: Path) -> None:
    config = tmp_path / "spillgate.yaml"
    config.write_text(_config(["first"]))
    proc = subprocess.Popen(
        [*SPILLGATE, "serve", "--config", str(config), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        url = None
        for _ in range(50):
            m = re.search(r"listening on (http://\S+)", proc.stdout.readline())
            if m:
                url = m.group(1)
                break
        assert url
        assert _models(url) == ["first"]
        config.write_text(_config(["first", "second"]))
        proc.send_signal(signal.SIGHUP)
        line = ""
        for _ in range(50):
            line = proc.stdout.readline()
            if "reloaded" in line or not line:
                break
        assert "reloaded" in line and "second" in line
        assert _models(url) == ["first", "second"]
        config.write_text("models: [broken\n")
        proc.send_signal(signal.SIGHUP)
        for _ in range(50):
            line = proc.stdout.readline()
            if "reload refused" in line or not line:
                break
        assert "not valid YAML" in line
        assert _models(url) == ["first", "second"] and proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


# -- argument and start-up errors are one line, no traceback ----------------------------------


@pytest.mark.parametrize("command", ["serve", "fake-upstream"])
@pytest.mark.parametrize(
    ("listen", "fragment"),
    [
        (
            "127.0.0.1:99999",
            "port must be between 0 and 65535 (0: any free port), got 99999 in '127.0.0.1:99999'",
        ),
        (
            "127.0.0.1:65536",
            "port must be between 0 and 65535 (0: any free port), got 65536 in '127.0.0.1:65536'",
        ),
        ("localhost", "expected HOST:PORT such as 127.0.0.1:8080, got 'localhost'"),
    ],
)
def test_listen_out_of_range_is_an_argument_error(
    command: str, listen: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from spillgate.cli import main

    with pytest.raises(SystemExit) as info:
        main([command, "--listen", listen])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"spillgate {command}: error: argument --listen: {fragment}"


def _one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_fake_upstream_on_a_busy_port() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _one_line_error(run("fake-upstream", "--listen", f"127.0.0.1:{port}"))
    assert line.startswith(f"spillgate: fake-upstream: cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in line


def test_fake_upstream_with_an_unknown_preset(tmp_path: Path) -> None:
    behaviors = tmp_path / "faults.yaml"
    behaviors.write_text("models:\n  gpt-x: {preset: capcity}\n")
    line = _one_line_error(run("fake-upstream", "--listen", "127.0.0.1:0", "--behaviors", str(behaviors)))
    assert line.startswith(
        f"spillgate: fake-upstream: {behaviors}.models.gpt-x.preset: unknown preset 'capcity'"
    )


def test_fake_upstream_with_a_missing_behaviors_file(tmp_path: Path) -> None:
    absent = tmp_path / "absent.yaml"
    line = _one_line_error(run("fake-upstream", "--listen", "127.0.0.1:0", "--behaviors", str(absent)))
    assert line == f"spillgate: fake-upstream: {absent}: cannot read: No such file or directory"


def test_fake_upstream_help_documents_the_behaviors_file(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    from spillgate.cli import main
    from spillgate.fake import Fault

    with pytest.raises(SystemExit) as info:
        main(["fake-upstream", "--help"])
    assert info.value.code == 0
    words = set(re.findall(r"[a-z_]+", capsys.readouterr().out))
    fields = [f.name for f in dataclasses.fields(Fault) if f.init]
    assert fields and Fault.PRESETS
    assert {*fields, *Fault.PRESETS, "preset", "retry_after", "models"} <= words


def test_check_counts_one_client_key_in_the_singular(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spillgate.cli import main

    config = tmp_path / "one-key.yaml"
    config.write_text(f"client_keys:\n  - {{name: team, hash: 'sha256:{'0' * 64}'}}\n")
    assert main(["check", "--config", str(config)]) == 0
    assert "; 1 client key\n" in capsys.readouterr().out
