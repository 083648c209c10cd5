"""The README and the docs/ pages: every relative link resolves (the file exists; a #fragment names a heading of
that file, slugged as GitHub does), and the README stays short enough to read in five minutes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
README_LINES = 300


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (but - and _), spaces to dashes."""
    text = re.sub(r"`|\*", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _prose(path: Path) -> str:
    """The file without its fenced code blocks (a `#` line in a shell block is not a heading, a link there is not
    one)."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", _prose(path), flags=re.M)}


def _links(path: Path) -> list[str]:
    return [u for u in LINK.findall(_prose(path)) if not re.match(r"[a-z]+:", u)]  # not http:, mailto:, ...


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    bad = []
    for link in _links(page):
        target, _, fragment = link.partition("#")
        file = (page.parent / target).resolve() if target else page
        if not file.exists():
            bad.append(f"{link}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif fragment and file.suffix == ".md" and fragment not in _anchors(file):
            bad.append(f"{link}: no heading '#{fragment}' in {file.name}")
    assert not bad, f"{page.name}:\n" + "\n".join(bad)


def test_the_checker_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("# Title\n\n[ok](#title) [bad](#nope) [gone](missing.md)\n\n```\n# not a heading\n```\n")
    assert _anchors(page) == {"title"}
    assert _links(page) == ["#title", "#nope", "missing.md"]


def test_readme_is_short_and_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.count("\n") <= README_LINES, "the README is the front door: move detail into docs/"
    linked = {Path(u.partition("#")[0]).name for u in _links(ROOT / "README.md") if u.startswith("docs/")}
    assert {p.name for p in (ROOT / "docs").glob("*.md")} <= linked
