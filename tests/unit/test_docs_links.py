"""Every link of the repository's Markdown files resolves (no database).

A relative link must name a file or directory of the repository, and an `#anchor` (in the same
file or after `file.md`) must name a heading of its target, slugged as GitHub does: the
heading's text lower-cased, its punctuation dropped except `-` and `_`, each space made a `-`;
a second heading with the same slug gets `-1`, a third `-2`. External links (any scheme:
http, https, mailto) are not checked.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Directories that hold no documentation of this repository (virtualenvs, caches, builds).
SKIPPED_DIRS = {"node_modules", "__pycache__", "build", "dist", "site-packages"}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)")
INLINE_LINK = re.compile(r"\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
GITHUB_LINE_ANCHOR = re.compile(r"^L\d+(?:-L\d+)?$")


def markdown_files(root: Path = ROOT) -> list[Path]:
    """The Markdown files of the repository, outside hidden directories (.git, .venv, caches)
    and build or dependency directories."""
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(
            d
            for d in subdirs
            if not d.startswith(".") and d not in SKIPPED_DIRS and not d.endswith(".egg-info")
        )
        found.extend(Path(directory, name) for name in sorted(files) if name.endswith(".md"))
    return found


def _lines_outside_code_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, line) for each line that is not inside a fenced code block."""
    kept: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
            continue
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            continue
        kept.append((number, line))
    return kept


def _plain_text(markdown: str) -> str:
    """A heading's text as GitHub renders it: links and images become their text, code spans
    their content, emphasis markers and HTML tags go away."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"!?\[([^\]]*)\]\[[^\]]*\]", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"(`+)(.*?)\1", r"\2", text)
    text = re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text)
    return text.strip()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (before duplicates are numbered)."""
    return re.sub(r"[^\w\- ]", "", _plain_text(heading).lower()).replace(" ", "-")


def headings(text: str) -> list[str]:
    """The text of each heading (ATX and setext) outside code blocks, in order."""
    found: list[str] = []
    previous: tuple[int, str] | None = None
    for number, line in _lines_outside_code_blocks(text):
        atx = ATX_HEADING.match(line)
        underline = SETEXT_UNDERLINE.match(line)
        if atx:
            found.append(atx.group(1) or "")
        elif (
            underline
            and previous is not None
            and previous[0] == number - 1
            and previous[1].strip()
            and not ATX_HEADING.match(previous[1])
            and not previous[1].lstrip().startswith(("-", "*", "+", ">", "|"))
        ):
            found.append(previous[1].strip())
        previous = (number, line)
    return found


def anchors(text: str) -> set[str]:
    """Every anchor of a Markdown text: its headings' slugs, duplicates numbered as GitHub
    numbers them, and explicit `<a id=...>` / `<a name=...>` anchors."""
    made: set[str] = set()
    for heading in headings(text):
        base = candidate = slug(heading)
        n = 0
        while candidate in made:
            n += 1
            candidate = f"{base}-{n}"
        made.add(candidate)
    made.update(HTML_ANCHOR.findall(text))
    return made


@functools.cache
def _anchors_of(path: Path) -> frozenset[str]:
    return frozenset(anchors(path.read_text(encoding="utf-8")))


def links(text: str) -> list[tuple[int, str]]:
    """(line number, destination) of each inline link, image and reference definition outside
    code blocks and code spans."""
    found: list[tuple[int, str]] = []
    for number, line in _lines_outside_code_blocks(text):
        prose = CODE_SPAN.sub("", line)
        definition = REFERENCE_DEFINITION.match(prose)
        if definition:
            found.append((number, definition.group(1)))
        found.extend((number, target) for target in INLINE_LINK.findall(prose))
    return [(number, target.strip("<>")) for number, target in found]


def problems(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the links of one Markdown file, one line per broken link."""
    found = []
    for number, target in links(path.read_text(encoding="utf-8")):
        if SCHEME.match(target):
            continue  # external: not checked
        where, _, anchor = target.partition("#")
        where, anchor = unquote(where), unquote(anchor)
        if not where:
            destination = path
        elif where.startswith("/"):
            destination = root / where.lstrip("/")
        else:
            destination = path.parent / where
        destination = Path(os.path.normpath(destination))
        shown = f"{path.relative_to(root)}:{number}: ({target})"
        if not destination.is_relative_to(root):
            found.append(f"{shown} points outside the repository")
            continue
        if not destination.exists():
            found.append(f"{shown} names {destination.relative_to(root)}, which does not exist")
            continue
        if not anchor:
            continue
        if destination.suffix == ".md" and destination.is_file():
            if anchor not in _anchors_of(destination):
                found.append(f"{shown} names no heading of {destination.relative_to(root)}")
        elif not (destination.is_file() and GITHUB_LINE_ANCHOR.match(anchor)):
            found.append(f"{shown} has an anchor that cannot be checked in {destination.relative_to(root)}")
    return found


def test_the_documentation_is_found() -> None:
    names = {str(path.relative_to(ROOT)) for path in markdown_files()}
    assert {"README.md", "CHANGELOG.md", "docs/troubleshooting.md", "bench/README.md"} <= names
    assert not any(name.startswith((".venv/", ".git/")) for name in names)


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("status --json", "status---json"),
        ("10. A Leader with a standby (failover)", "10-a-leader-with-a-standby-failover"),
        ("`sync_token` and *the* [token](x.md)", "sync_token-and-the-token"),
        ("What's new? Émigré, 100%!", "whats-new-émigré-100"),
        ("Runbook: two real servers", "runbook-two-real-servers"),
    ],
)
def test_slugs_are_githubs(heading: str, expected: str) -> None:
    assert slug(heading) == expected


def test_duplicate_headings_are_numbered_and_code_blocks_ignored() -> None:
    text = '# Notes\n## Notes\n```sh\n# Notes\n```\nNotes\n-----\n<a id="here"></a>\n'
    assert anchors(text) == {"notes", "notes-1", "notes-2", "here"}


def test_broken_links_are_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Title\n## Part one\n", encoding="utf-8")
    (tmp_path / "a.md").write_text(
        "# A\n"
        "[ok](docs/b.md#part-one) [ok](#a) [ok](docs/) [web](https://example.org/x#y)\n"
        "`[code](missing.md)`\n"
        "```\n[fenced](missing.md)\n```\n"
        "[gone](docs/missing.md) [bad anchor](docs/b.md#part-two) [self](#nowhere)\n"
        "[out](../outside.md)\n"
        "[ref]: docs/b.md#title\n",
        encoding="utf-8",
    )
    found = problems(tmp_path / "a.md", tmp_path)
    assert [line.split(": ", 1)[1] for line in found] == [
        "(docs/missing.md) names docs/missing.md, which does not exist",
        "(docs/b.md#part-two) names no heading of docs/b.md",
        "(#nowhere) names no heading of a.md",
        "(../outside.md) points outside the repository",
    ]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_resolves(path: Path) -> None:
    broken = problems(path)
    assert not broken, "broken links:\n" + "\n".join(broken)
