"""The README's table of kinds is what keventing serves: every kind, with every apiVersion (the stored one first)."""

from __future__ import annotations

import re
from pathlib import Path

from keventing.resources.registry import KINDS

README = Path(__file__).resolve().parents[2] / "README.md"


def _table() -> dict[str, list[str]]:
    text = README.read_text()
    section = text.split("### Kinds and versions", 1)[1].split("\n### ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[0] in ("kind", "---"):
            continue
        versions = re.findall(r"`([^`]+)`", cells[1])
        group = versions[0].rsplit("/", 1)[0] if "/" in versions[0] else ""
        # `eventing.knative.dev/v1beta2`, `v1beta3`: later versions are in the first one's group.
        rows[cells[0]] = [v if "/" in v or not group else f"{group}/{v}" for v in versions]
    return rows


def test_the_readme_lists_every_kind_with_its_versions() -> None:
    assert _table() == {kind: list(cls.API_VERSIONS) for kind, cls in KINDS.items()}
