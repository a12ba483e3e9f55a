"""How ``spillgate doctor --alias demo`` finds the running demo (``spillgate serve`` with no config).

The demo has no config file, and its fake upstream listens on a port picked at start: only the
serving process knows it. So the demo *publishes* its fake upstream's address in a small file
(:func:`publish`, :func:`withdraw`) and the doctor, given ``--alias`` with no config, reads it
(:func:`running_demo`) and rebuilds the demo's settings over those addresses.

The file holds addresses only, never a key: the doctor rebuilds the settings itself
(:func:`~spillgate.config.defaults.demo_settings`, no ``${VAR}`` expansion) and accepts only loopback
``http://`` URLs, so a stale or planted file can at most point keyless probes at another local port.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from spillgate.config.defaults import demo_settings
from spillgate.config.schema import Settings

DEMO_FILE_ENV = "SPILLGATE_DEMO_FILE"
"""Overrides where the demo's address file lives (tests; several users on one temp directory)."""

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, slots=True)
class DemoAddress:
    """Where a running demo gateway and its fake upstream listen."""

    gateway: str
    openai_base_url: str
    anthropic_base_url: str
    pid: int

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))


def demo_file(env: Mapping[str, str]) -> Path:
    """The address file: ``$SPILLGATE_DEMO_FILE``, else one per user in the runtime or temp directory."""
    given = env.get(DEMO_FILE_ENV)
    if given:
        return Path(given)
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "spillgate-demo.json"
    user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"spillgate-demo-{user}.json"


def parse_address(data: bytes) -> DemoAddress | None:
    """The published address, or ``None`` for anything else than loopback http URLs and a pid (pure)."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(raw, dict):
        return None
    urls = [raw.get(name) for name in ("gateway", "openai_base_url", "anthropic_base_url")]
    pid = raw.get("pid")
    if (
        not all(isinstance(url, str) and _loopback_http(url) for url in urls)
        or not isinstance(pid, int)
        or pid <= 0
    ):
        return None
    gateway, openai, anthropic = (str(url) for url in urls)
    return DemoAddress(gateway, openai, anthropic, pid)


def _loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK and parts.port is not None


def publish(path: Path, address: DemoAddress) -> None:
    """Write the address file (atomically: a new file renamed over the old one, never through a link)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".spillgate-demo-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(address.to_json())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def withdraw(path: Path, address: DemoAddress) -> None:
    """Remove the address file, if it is still this demo's (another demo may have started since)."""
    try:
        if path.read_bytes() == address.to_json():
            path.unlink()
    except OSError:
        pass


def running_demo(env: Mapping[str, str]) -> Settings | None:
    """The running demo's settings (alias ``demo`` over its fake upstream), or ``None`` when no demo
    published its address, the file is not ours or not valid, or its process has ended."""
    path = demo_file(env)
    try:
        if hasattr(os, "getuid") and path.stat().st_uid != os.getuid():
            return None
        data = path.read_bytes()
    except OSError:
        return None
    address = parse_address(data)
    if address is None or not _alive(address.pid):
        return None
    settings = demo_settings(address.openai_base_url, address.anthropic_base_url)
    return dataclasses.replace(settings, source=f"the running demo at {address.gateway}")


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
