"""The README tells how to name an alias so that Codex CLI and Claude Code know its limits, and
where to set the window when the alias keeps a name of its own (issue 11, item 10)."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"### {title}\n")
    end = text.find("\n#", start + 4)
    return text[start : end if end != -1 else None]


@pytest.mark.parametrize(
    "needle",
    [
        "Model metadata for `coder` not found",  # the warning it answers
        "gpt-5-codex",  # a model name Codex knows
        "claude-sonnet-4-5",  # a model name Claude Code knows
        "~/.codex/config.toml",
        "model_context_window",  # Codex CLI config key (0.169.0)
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS",  # Claude Code environment setting (2.1.328)
    ],
)
def test_alias_naming_section_says(needle: str) -> None:
    assert needle in section("Naming an alias for the clients")


def test_the_doctor_section_mentions_the_demo() -> None:
    text = README.read_text(encoding="utf-8")
    doctor = text[text.index("## Diagnose: `spillgate doctor`") :]
    assert "spillgate doctor --alias demo" in doctor


CLIENTS = Path(__file__).resolve().parent / "e2e" / "clients" / "node_modules"
CLIENT_KEYS = [
    ("@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex", "model_context_window"),
    ("@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex", "model_auto_compact_token_limit"),
    ("@anthropic-ai/claude-code-linux-x64/claude", "CLAUDE_CODE_MAX_CONTEXT_TOKENS"),
    ("@anthropic-ai/claude-code-linux-x64/claude", "CLAUDE_CODE_AUTO_COMPACT_WINDOW"),
]


@pytest.mark.parametrize(("binary", "key"), CLIENT_KEYS, ids=[key for _, key in CLIENT_KEYS])
def test_the_keys_named_are_the_installed_clients_own(binary: str, key: str) -> None:
    """Where the e2e clients are installed, each key the section names is in the client's binary."""
    path = CLIENTS / binary
    if not path.is_file():
        pytest.skip(f"{binary} is not installed (tests/e2e/clients)")
    assert key in section("Naming an alias for the clients")
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        assert data.find(key.encode()) != -1, f"{key} is not a key of {binary}"
