"""docs/metrics.md defines every public analytics function, and every result's definition
pointer lands on one of its sections."""

from __future__ import annotations

import re
from pathlib import Path

import analytics

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "metrics.md"


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in text.splitlines()
        if line.startswith("#")
    }


def test_every_public_name_is_on_the_page() -> None:
    text = DOC.read_text()
    missing = [n for n in analytics.__all__ if not re.search(rf"`{re.escape(n)}[`(.]", text)]
    assert not missing, f"not defined in docs/metrics.md: {missing}"


def test_every_definition_pointer_lands_on_a_section() -> None:
    anchors = _anchors(DOC.read_text())
    pointers = {
        (path.name, anchor)
        for path in (REPO / "analytics").glob("*.py")
        for anchor in re.findall(r"docs/metrics\.md#([a-z0-9-]+)", path.read_text())
    }
    assert len(pointers) >= 15
    broken = sorted(p for p in pointers if p[1] not in anchors)
    assert not broken, f"pointers to missing sections of docs/metrics.md: {broken}"
