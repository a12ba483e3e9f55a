"""The repository ignores what running the gateway leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest

GITIGNORE = Path(__file__).resolve().parent.parent / ".gitignore"


@pytest.mark.parametrize(
    "pattern", ["*.db", "*.db-wal", "*.db-shm", "*.sqlite", "*.sqlite-wal", "*.sqlite-shm"]
)
def test_sqlite_files_and_their_wal_are_ignored(pattern: str) -> None:
    assert pattern in GITIGNORE.read_text().splitlines()


def test_readme_documents_the_fake_upstreams_behaviors_file() -> None:
    import dataclasses
    import re

    import yaml

    from spillgate.fake import Fault, parse_behaviors

    readme = (GITIGNORE.parent / "README.md").read_text()
    section = readme[readme.index("### The behaviours file") :]
    section = section[: section.index("\n## ")]
    words = set(re.findall(r"[a-z_]+", section))
    assert {f.name for f in dataclasses.fields(Fault) if f.init} <= words
    assert set(Fault.PRESETS) <= words
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    behaviors = parse_behaviors(yaml.safe_load(example.group(1)))
    assert behaviors["gpt-x"].status == 503 and behaviors["claude-y"].status == 429
