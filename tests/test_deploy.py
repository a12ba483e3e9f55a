"""The deployment files in ``deploy/`` load, and their numbers agree with one another and with the
gateway they run: probe paths and ports, stop timeouts against ``limits.shutdown_grace``, Service
names against the config's URLs, secrets from Secrets and never inline.

The example config is read through the real loader and served for real: ``spillgate serve
--workers 2`` with it, on a ``redis-server`` started with the Kubernetes example's arguments, and
the image's ``HEALTHCHECK`` command run against it. Docker itself is not installed here: the image
is not built, its recipe is read (``systemd-analyze verify`` checks the unit where it exists).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml

from spillgate.config.dsn import parse_dsn
from spillgate.config.loader import ConfigError, load_settings, parse_settings
from spillgate.config.schema import Settings
from spillgate.gateway.auth import hash_key
from spillgate.workers import refusal

from .redisserver import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
EXAMPLE = DEPLOY / "config.example.yaml"
KUBERNETES = DEPLOY / "kubernetes"
CLIENT_KEY = "sk-sg-deploy-test-client"
SECRETS = {
    "OPENAI_API_KEY": "sk-deploy-test-upstream-credential",
    "SPILLGATE_ADMIN_TOKEN": "deploy-test-admin-token-0123456789",
    "SPILLGATE_CLIENT_KEY_HASH": hash_key(CLIENT_KEY),
}
"""What the Secret (or the EnvironmentFile) gives the gateway."""
_REQUIRED_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""``${NAME}`` without a default: a variable the deployment must set."""


def example_settings() -> Settings:
    return load_settings(EXAMPLE, env=SECRETS)


# -- the example config -----------------------------------------------------------------------


def test_the_example_config_loads_with_its_secrets_from_the_environment() -> None:
    s = example_settings()
    assert (s.host, s.port) == ("0.0.0.0", 8080)
    assert s.state.url == "redis://redis:6379/0"
    assert refusal(s, 2) is None, "more than one worker needs the shared state store"
    assert s.usage_dsn is not None and parse_dsn(s.usage_dsn).backend == "postgres"
    assert urlsplit(s.usage_dsn).password is None, "the password comes from PGPASSWORD, not the DSN"
    assert s.admin_token is not None and s.admin_token.reveal() == SECRETS["SPILLGATE_ADMIN_TOKEN"]
    api_key = s.providers["openai"].api_key
    assert api_key is not None and api_key.reveal() == SECRETS["OPENAI_API_KEY"]
    assert [k.sha256 for k in s.client_keys] == [hash_key(CLIENT_KEY).removeprefix("sha256:")]


def test_the_example_config_has_no_secret_in_it_and_names_each_missing_one() -> None:
    text = EXAMPLE.read_text()
    assert set(_REQUIRED_REF.findall(text)) == set(SECRETS)
    for value in SECRETS.values():
        assert value not in text
    with pytest.raises(ConfigError) as missing:
        load_settings(EXAMPLE, env={})
    for name in SECRETS:
        assert name in str(missing.value)


def test_spillgate_check_accepts_the_example_config() -> None:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("SPILLGATE_")}
    done = subprocess.run(
        [sys.executable, "-m", "spillgate", "check", "--config", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, **SECRETS},
    )
    assert done.returncode == 0, done.stderr
    assert f"{EXAMPLE}: OK" in done.stdout
    assert "listen 0.0.0.0:8080; 1 client key" in done.stdout
    for value in SECRETS.values():
        assert value not in done.stdout + done.stderr


# -- Kubernetes ---------------------------------------------------------------------------------


def k8s(file: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((KUBERNETES / file).read_text()) if d is not None]
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
        assert doc["metadata"]["name"]
    return docs


def one(file: str, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in k8s(file) if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{file}: one {kind} {name}"
    return found[0]


def gateway_pod() -> dict[str, Any]:
    pod: dict[str, Any] = one("spillgate.yaml", "Deployment", "spillgate")["spec"]["template"]["spec"]
    return pod


def gateway_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = gateway_pod()["containers"]
    (container,) = [c for c in containers if c["name"] == "spillgate"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def port_named(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def test_every_kubernetes_file_loads_with_the_kinds_it_should_have() -> None:
    kinds = {f.name: sorted(d["kind"] for d in k8s(f.name)) for f in sorted(KUBERNETES.glob("*.yaml"))}
    assert kinds == {
        "postgres.yaml": ["NetworkPolicy", "Service", "StatefulSet"],
        "redis.yaml": ["Deployment", "NetworkPolicy", "Service"],
        "spillgate.yaml": ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"],
    }


def test_the_configmap_carries_the_example_config() -> None:
    text = one("spillgate.yaml", "ConfigMap", "spillgate-config")["data"]["config.yaml"]
    assert yaml.safe_load(text) == yaml.safe_load(EXAMPLE.read_text())
    assert parse_settings(yaml.safe_load(text), env=SECRETS, source=str(EXAMPLE)) == example_settings()


def test_the_probes_ask_readyz_and_healthz_on_the_configs_port() -> None:
    container = gateway_container()
    ready, alive = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert ready["path"] == "/readyz" and alive["path"] == "/healthz"
    assert port_named(container, ready["port"]) == example_settings().port
    assert port_named(container, alive["port"]) == example_settings().port


def test_termination_grace_covers_the_prestop_pause_and_the_drain() -> None:
    pod, container = gateway_pod(), gateway_container()
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    assert pause >= 5, "the endpoints need a few seconds to drop the pod"
    grace = example_settings().limits.shutdown_grace
    assert pod["terminationGracePeriodSeconds"] > pause + grace
    # A wedged process is not given the drain's minutes.
    assert container["livenessProbe"]["terminationGracePeriodSeconds"] < grace


def test_the_container_runs_one_worker_per_core_of_its_cpu_limit() -> None:
    container = gateway_container()
    args = container["args"]
    workers = args[args.index("--workers") + 1]
    match = re.fullmatch(r"\$\((\w+)\)", workers)
    assert match is not None, workers
    field = env_of(container)[match.group(1)]["valueFrom"]["resourceFieldRef"]
    assert field["resource"] == "limits.cpu" and field["containerName"] == container["name"]
    assert int(container["resources"]["limits"]["cpu"]) >= 2
    assert refusal(example_settings(), int(container["resources"]["limits"]["cpu"])) is None


def test_the_deployment_rolls_without_losing_capacity() -> None:
    spec = one("spillgate.yaml", "Deployment", "spillgate")["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"] == labels
    assert (
        one("spillgate.yaml", "PodDisruptionBudget", "spillgate")["spec"]["selector"]["matchLabels"] == labels
    )
    service = one("spillgate.yaml", "Service", "spillgate")["spec"]
    assert service["selector"] == labels
    (port,) = service["ports"]
    assert port_named(gateway_container(), port["targetPort"]) == example_settings().port


def test_secrets_come_from_kubernetes_secrets_and_the_config_from_the_configmap() -> None:
    text = (KUBERNETES / "spillgate.yaml").read_text()
    pod = gateway_pod()
    (volume,) = [v for v in pod["volumes"] if v.get("configMap")]
    assert volume["configMap"]["name"] == "spillgate-config"
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert {"secretRef": {"name": "spillgate"}} in container["envFrom"]
        for name, entry in env_of(container).items():
            if re.search(r"KEY|TOKEN|PASSWORD|SECRET|HASH", name):
                assert "value" not in entry, f"{container['name']}: {name} is inline"
        password = env_of(container)["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password == {"name": "spillgate-postgres", "key": "password"}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts[volume["name"]] == "/etc/spillgate"
    # Each variable the config requires is one the documented `kubectl create secret` sets.
    for name in SECRETS:
        assert f"--from-literal={name}=" in text
    assert env_of(gateway_container())["SPILLGATE_CONFIG"]["value"] == "/etc/spillgate/config.yaml"


def test_the_schema_is_migrated_before_the_gateway_serves() -> None:
    settings = example_settings()
    assert settings.usage_dsn is not None and parse_dsn(settings.usage_dsn).backend == "postgres"
    (migrate,) = gateway_pod()["initContainers"]
    assert migrate["image"] == gateway_container()["image"]
    assert migrate["command"][:2] == ["spillgate", "migrate"]
    command = migrate["command"]
    assert command[command.index("--config") + 1] == env_of(gateway_container())["SPILLGATE_CONFIG"]["value"]


def test_redis_keeps_no_state_on_disk_and_evicts_by_ttl_at_the_configs_address() -> None:
    (container,) = one("redis.yaml", "Deployment", "redis")["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--save") + 1] == ""
    assert args[args.index("--appendonly") + 1] == "no"
    assert args[args.index("--maxmemory-policy") + 1] == "volatile-ttl"
    url = urlsplit(example_settings().state.url or "")
    (port,) = one("redis.yaml", "Service", "redis")["spec"]["ports"]
    assert (url.hostname, url.port) == ("redis", port["port"])
    assert port_named(container, port["targetPort"]) == 6379


def test_postgres_matches_the_usage_dsn_and_has_room_for_every_worker() -> None:
    dsn = urlsplit(example_settings().usage_dsn or "")
    service = one("postgres.yaml", "Service", "postgres")
    stateful = one("postgres.yaml", "StatefulSet", "postgres")["spec"]
    (port,) = service["spec"]["ports"]
    assert (dsn.hostname, dsn.port) == (service["metadata"]["name"], port["port"])
    assert stateful["serviceName"] == service["metadata"]["name"]
    (container,) = stateful["template"]["spec"]["containers"]
    assert port_named(container, port["targetPort"]) == 5432
    env = env_of(container)
    assert env["POSTGRES_USER"]["value"] == dsn.username
    assert env["POSTGRES_DB"]["value"] == dsn.path.lstrip("/")
    password = env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == env_of(gateway_container())["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
    (claim,) = stateful["volumeClaimTemplates"]
    assert claim["metadata"]["name"] in {m["name"] for m in container["volumeMounts"]}
    args = container["args"]
    max_connections = int(args[args.index("-c") + 1].removeprefix("max_connections="))
    replicas = one("spillgate.yaml", "Deployment", "spillgate")["spec"]["replicas"]
    workers = int(gateway_container()["resources"]["limits"]["cpu"])
    # Two connections a worker (its queries, its usage writer), one more while a pod migrates;
    # and a surge pod during a rollout.
    assert max_connections >= 2 * (replicas + 1) * workers + replicas + 1


# -- systemd --------------------------------------------------------------------------------------


def unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections as lists of (key, value): a key may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"a key before any section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line}"
        current.append((key.strip(), value.strip()))
    return sections


def systemd_seconds(text: str) -> float:
    """``200s``, ``3min 20s``, ``200`` (seconds) as seconds."""
    units = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "": 1.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    assert parts and "".join(n + u for n, u in parts) == text.replace(" ", ""), text
    return sum(float(n) * units[u] for n, u in parts)


@pytest.fixture
def service() -> dict[str, str]:
    sections = unit((DEPLOY / "spillgate.service").read_text())
    assert {"Unit", "Service", "Install"} <= sections.keys()
    values = dict(sections["Service"])
    values["Environment"] = " ".join(v for k, v in sections["Service"] if k == "Environment")
    values["Wants"] = " ".join(v for k, v in sections["Unit"] if k == "Wants")
    values["After"] = " ".join(v for k, v in sections["Unit"] if k == "After")
    return values


def test_the_unit_stops_with_sigterm_and_waits_longer_than_the_drain(service: dict[str, str]) -> None:
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed", "SIGTERM to the supervisor, which passes it on"
    assert systemd_seconds(service["TimeoutStopSec"]) > example_settings().limits.shutdown_grace + 5


def test_the_unit_runs_one_worker_per_core_unprivileged_and_sandboxed(service: dict[str, str]) -> None:
    exec_start = service["ExecStart"].split()
    assert exec_start[0].startswith("/") and exec_start[0].endswith("/spillgate")
    assert exec_start[1:] == ["serve", "--workers", "auto"]
    assert service["User"] == "spillgate" and service["Type"] in ("simple", "exec")
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "/etc/spillgate/env"
    assert "SPILLGATE_CONFIG=/etc/spillgate/config.yaml" in service["Environment"].split()
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "spillgate"
    assert int(service["LimitNOFILE"]) >= 65536
    # The example's shared state is Redis: on one host it starts first.
    assert "redis-server.service" in service["Wants"].split()
    assert "redis-server.service" in service["After"].split()


def test_systemd_accepts_every_line_of_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    spillgate = Path(sys.executable).parent / "spillgate"
    text = (DEPLOY / "spillgate.service").read_text()
    copy = tmp_path / "spillgate.service"
    copy.write_text(text.replace("/opt/spillgate/bin/spillgate", str(spillgate)))
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on a key it ignores: what it says is the verdict.
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


# -- the image --------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            instructions.append((word.upper(), rest.strip()))
            pending = ""
    assert not pending
    return instructions


def args_of(name: str) -> list[str]:
    return [rest for word, rest in dockerfile() if word == name]


def healthcheck_command() -> list[str]:
    (healthcheck,) = args_of("HEALTHCHECK")
    command: list[str] = json.loads(healthcheck[healthcheck.index("CMD ") + 4 :])
    return command


def test_the_image_is_built_in_two_stages_on_a_slim_python() -> None:
    (arg,) = args_of("ARG")
    name, _, version = arg.partition("=")
    froms = [f.replace("${" + name + "}", version) for f in args_of("FROM")]
    assert froms[0].endswith(" AS build") and len(froms) == 2
    runtime = re.fullmatch(r"python:3\.(\d+)-slim", froms[1])
    assert runtime is not None and int(runtime.group(1)) >= 11
    assert any("from=build," in run for run in args_of("RUN")), "the runtime installs the built wheels"


def test_the_image_runs_unprivileged_drains_on_sigterm_and_serves_the_configs_port() -> None:
    (user,) = args_of("USER")
    uid = user.partition(":")[0]
    assert uid not in ("root", "0") and uid.isdigit(), "numeric, for runAsNonRoot"
    assert int(uid) == gateway_pod()["securityContext"]["runAsUser"]
    assert args_of("STOPSIGNAL") == ["SIGTERM"]
    assert args_of("EXPOSE") == [str(example_settings().port)]
    (entrypoint,) = args_of("ENTRYPOINT")
    assert json.loads(entrypoint)[-2:] == ["spillgate", "serve"]
    env = " ".join(args_of("ENV")).split()
    assert "SPILLGATE_CONFIG=/etc/spillgate/config.yaml" in env
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert f"127.0.0.1:{example_settings().port}/healthz" in command[2]


def test_the_build_copies_only_what_exists_and_what_the_context_keeps() -> None:
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [c.split()[:-1] for c in args_of("COPY") if not c.startswith("--")]
    sources = [s for c in copies for s in c]
    assert sources == ["pyproject.toml", "README.md", "spillgate"]
    for source in sources:
        assert (ROOT / source).exists()
        for pattern in patterns:
            assert not fnmatch.fnmatch(source, pattern.removeprefix("**/")), (source, pattern)
    # Everything the wheel is built from stays in the context.
    for needed in [*ROOT.joinpath("spillgate").rglob("*.py"), *ROOT.joinpath("spillgate").rglob("*.html")]:
        relative = needed.relative_to(ROOT).as_posix()
        for pattern in patterns:
            assert not fnmatch.fnmatch(relative, pattern.removeprefix("**/")), (relative, pattern)
            assert not fnmatch.fnmatch(needed.name, pattern.removeprefix("**/")), (relative, pattern)


# -- served for real -------------------------------------------------------------------------------


@pytest.fixture
def redis_from_the_example(tmp_path: Path) -> Iterator[int]:
    """``redis-server`` with redis.yaml's arguments, on a free loopback port; stopped by its PID."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    (container,) = one("redis.yaml", "Deployment", "redis")["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "redis-server"
    port = free_port()
    proc = subprocess.Popen(
        [binary, *container["args"][1:], "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while _redis(port, "PING") != b"+PONG\r\n":
            assert proc.poll() is None, f"redis-server refused redis.yaml's arguments ({proc.returncode})"
            assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _redis(port: int, *args: str) -> bytes:
    request = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(request.encode())
            return s.recv(65536)
    except OSError:
        return b""


async def _healthcheck(port: int) -> int:
    """The image's HEALTHCHECK command, aimed at ``port`` (the image's is 8080)."""
    command = healthcheck_command()
    code = command[2].replace(f"127.0.0.1:{example_settings().port}", f"127.0.0.1:{port}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(proc.wait(), 20)


async def test_the_example_serves_two_workers_on_the_example_redis_and_stops_on_sigterm(
    tmp_path: Path, redis_from_the_example: int
) -> None:
    for name, value in [("save", ""), ("appendonly", "no"), ("maxmemory-policy", "volatile-ttl")]:
        assert _redis(redis_from_the_example, "CONFIG", "GET", name).endswith(
            f"${len(value)}\r\n{value}\r\n".encode()
        ), name
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPILLGATE_", "PG"))}
    env |= SECRETS | {
        "SPILLGATE_CONFIG": str(EXAMPLE),  # as the image and the unit give it
        "SPILLGATE_STATE": f"redis://127.0.0.1:{redis_from_the_example}/0",
        "SPILLGATE_USAGE_DSN": f"sqlite:{tmp_path / 'usage.db'}",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "spillgate", "serve", "--workers", "2", "--listen", f"127.0.0.1:{port}"],
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            ready: dict[str, Any] = {}
            deadline = time.monotonic() + 30
            while ready.get("state_store") != "ok":
                assert proc.returncode is None, log.read_text()
                assert time.monotonic() < deadline, f"not ready with the shared store: {ready}"
                try:
                    async with http.get(url + "/readyz") as reply:
                        ready = await reply.json() if reply.status == 200 else {}
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            assert ready == {"status": "ready", "state_store": "ok", "usage_store": "ok"}
            assert await _healthcheck(port) == 0
            # The client key and the admin token of the Secret are in force.
            body = {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(url + "/v1/chat/completions", json=body) as reply:
                assert reply.status == 401
            async with http.get(url + "/metrics") as reply:
                assert reply.status == 401
            token = {"authorization": f"Bearer {SECRETS['SPILLGATE_ADMIN_TOKEN']}"}
            async with http.get(url + "/metrics", headers=token) as reply:
                assert reply.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()
        assert await _healthcheck(port) != 0, "the healthcheck fails once nothing serves"
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 5)
    text = log.read_text()
    for value in SECRETS.values():
        assert value not in text
