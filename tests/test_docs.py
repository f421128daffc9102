"""The README and docs/ hold together: every relative link resolves (a file, and for a link with
#anchor a heading of that file, slugged as GitHub slugs it), and every command of the README's
cheat-sheet parses: its options exist, its values convert, and ``--help`` exits 0."""

from __future__ import annotations

import re
import shlex
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import click
import pytest
from click.testing import CliRunner

from cgbench.cli import main

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked out."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(CODE_SPAN.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation and symbols removed,
    each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = "".join(c for c in text.lower()
                   if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor in ``page``; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def relative_links(page: Path) -> list[str]:
    targets = [m.group(1) for line in prose_lines(page.read_text()) for m in LINK.finditer(line)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]  # http:, mailto:, ...


def cheat_sheet() -> list[list[str]]:
    """The README's fenced block under the heading "Commands", one command per line."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"^## Commands\s*\n+```(?:bash|sh)?\n(.*?)^```", text, re.S | re.M)
    assert block, "the README has no ```bash block right under '## Commands'"
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines() if line.strip()]


def test_pages_exist():
    assert (ROOT / "README.md").is_file() and len(PAGES) > 1, "docs/*.md is missing"
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150, "the README is a front door: <= 150 lines"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    links = relative_links(page)
    broken = []
    for link in links:
        path, _, anchor = unquote(link).partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading with anchor #{anchor} in {target.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_checker_sees_links_and_anchors(tmp_path):
    """The checks above can fail: a missing file and a missing heading are both found."""
    page = tmp_path / "page.md"
    page.write_text("# A heading: with `code`, punctuation & symbols → too\n## Twice\n## Twice\n"
                    "[ok](#a-heading-with-code-punctuation--symbols--too) [ok](#twice-1) [gone](other.md)\n"
                    "`[not a link](nowhere.md)`\n```\n[not a link](nowhere.md)\n```\n")
    assert anchors(page) == {"a-heading-with-code-punctuation--symbols--too", "twice", "twice-1"}
    assert relative_links(page) == ["#a-heading-with-code-punctuation--symbols--too", "#twice-1", "other.md"]


def _command(argv: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """The (sub)command ``argv`` names, its name path, and the arguments left for it."""
    assert argv[0] == "cgbench", f"not a cgbench command: {' '.join(argv)}"
    cmd, path, rest = main, ["cgbench"], argv[1:]
    while isinstance(cmd, click.Group):
        assert rest, f"{' '.join(path)} needs a subcommand"
        with click.Context(cmd, info_name=path[-1]) as ctx:
            sub = cmd.get_command(ctx, rest[0])
        assert sub is not None, f"{' '.join(path)} has no command {rest[0]!r}"
        cmd, path, rest = sub, [*path, rest[0]], rest[1:]
    return cmd, path, rest


def test_the_cheat_sheet_lists_the_commands():
    commands = cheat_sheet()
    assert len(commands) >= 10
    named = {tuple(_command(argv)[1][1:]) for argv in commands}
    with click.Context(main) as ctx:
        top = set(main.list_commands(ctx))
    assert top <= {path[0] for path in named}, f"commands missing from the cheat-sheet: {top - {p[0] for p in named}}"


@pytest.mark.parametrize("argv", cheat_sheet(), ids=lambda a: " ".join(a))
def test_every_cheat_sheet_command_parses(argv, monkeypatch):
    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)  # main() sets it; restored afterwards
    cmd, path, rest = _command(argv)
    try:
        cmd.make_context(" ".join(path), list(rest))  # options exist, values convert; nothing runs
    except click.ClickException as exc:
        pytest.fail(f"{' '.join(argv)}: {exc.format_message()}")
    result = CliRunner().invoke(main, [*argv[1:], "--help"], prog_name="cgbench")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {' '.join(path)} "), result.output
