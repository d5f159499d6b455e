"""Every relative link in README.md and docs/*.md points to a file that exists, and every #anchor to a heading.

The README keeps the guide and docs/ the reference, so most of what a reader needs is one link away: a moved or
renamed page, or a reworded heading, must fail here rather than leave a dead link behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# [text](target) and [text](target "title"); images too. Reference definitions: [name]: target
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+\1")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # https:, mailto:, protocol-relative


def doc_files(root: Path = ROOT) -> list[Path]:
    """The Markdown files whose links are checked: the README and everything under docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _prose_lines(text: str, *, keep_code_spans: bool = False) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks; inline code spans blanked unless kept (a link shown as code is no link,
    but a heading's code span is part of its anchor)."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line if keep_code_spans else _CODE_SPAN.sub("", line)))
    return lines


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces to hyphens, -1 on repeats."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose_lines(text, keep_code_spans=True):
        match = _HEADING.match(line)
        if not match:
            continue
        title = re.sub(r"<[^>]+>", "", match.group(1)).replace("`", "")
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link in a heading keeps only its text
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line, target) for every link in the file that is not external (no scheme)."""
    found = []
    for number, line in _prose_lines(path.read_text()):
        for match in [*_INLINE_LINK.finditer(line), *_REFERENCE_LINK.finditer(line)]:
            target = match.group(1)
            if not _EXTERNAL.match(target):
                found.append((number, target))
    return found


def broken_links(files: list[Path], root: Path = ROOT) -> list[str]:
    """Each relative link whose file is missing, or whose #anchor names no heading of that file."""
    problems = []
    for path in files:
        for number, target in relative_links(path):
            place = f"{path.relative_to(root)}:{number}: {target}"
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.is_relative_to(root):
                problems.append(f"{place} (points outside the repository)")
            elif not linked.exists():
                problems.append(f"{place} (no such file: {linked.relative_to(root)})")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text()):
                problems.append(f"{place} (no heading with anchor #{anchor} in {linked.relative_to(root)})")
    return problems


def test_readme_and_docs_links_point_to_existing_files_and_headings() -> None:
    files = doc_files()
    links = [link for path in files for link in relative_links(path)]
    # The README links into docs/ throughout: finding none means the link pattern broke, not that all is well.
    assert len(links) >= 20, links
    assert broken_links(files) == []


def test_a_missing_file_and_a_missing_heading_are_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## How a request is served\n\n## Setup\n\n## Setup\n")
    (tmp_path / "README.md").write_text(
        "See [the guide](docs/guide.md), [serving](docs/guide.md#how-a-request-is-served),\n"
        "[setup again](docs/guide.md#setup-1), [gone](docs/gone.md), [bad anchor](docs/guide.md#nope),\n"
        "[outside](../elsewhere.md), [web](https://example.com/x.md) and `[code](docs/not-a-link.md)`.\n"
        "```\n[fenced](docs/also-not-a-link.md)\n```\n[ref]: docs/missing-ref.md\n"
    )
    assert broken_links(doc_files(tmp_path), root=tmp_path) == [
        "README.md:2: docs/gone.md (no such file: docs/gone.md)",
        "README.md:2: docs/guide.md#nope (no heading with anchor #nope in docs/guide.md)",
        "README.md:3: ../elsewhere.md (points outside the repository)",
        "README.md:7: docs/missing-ref.md (no such file: docs/missing-ref.md)",
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        (
            "## Readiness: one team's model never takes a process out",
            "readiness-one-teams-model-never-takes-a-process-out",
        ),
        ("## The `modeldeck` client", "the-modeldeck-client"),
        ("## Live streams (websockets): up while idle", "live-streams-websockets-up-while-idle"),
        ("## Canary, shadow and batching", "canary-shadow-and-batching"),
        ("## Health: `/healthz`", "health-healthz"),
    ],
)
def test_heading_anchors_follow_github(heading: str, anchor: str) -> None:
    assert anchor in heading_anchors(heading + "\n")
