"""The README and docs/*.md: every relative link resolves inside the repository, and every command
line they show names options that exist.

- A relative link (``[text](path)``, ``![alt](path)``, ``[ref]: path``, HTML ``href``/``src``) must
  name an existing file or folder inside the repository; links that climb out of it (such as
  ``../shared/...``) or absolute paths fail, and so does any mention of ``../shared`` at all.
- A ``#anchor`` (in the same file or another Markdown file) must match a heading, slugged as
  GitHub does.
- Every ``gpsgpu ...`` command line in a code block or inline code span, and every option row of
  ``docs/cli.md``, must name a real command and only options that command has (from the Typer app
  itself, the same definitions ``--help`` prints), and every option of every command has its row in
  ``docs/cli.md``; no ``<!-- TODO`` comment is left in the docs.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

FENCE = re.compile(r"^\s*(```|~~~)")
COMMENT = re.compile(r"<!--.*?-->", re.S)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:", "ftp://")


def _split(text: str) -> tuple[str, list[str]]:
    """``(prose, code blocks)``: the text outside fenced code blocks, and each block's text."""
    prose: list[str] = []
    blocks: list[str] = []
    block: list[str] | None = None
    for line in text.splitlines():
        if FENCE.match(line):
            if block is None:
                block = []
            else:
                blocks.append("\n".join(block))
                block = None
            continue
        (prose if block is None else block).append(line)
    if block is not None:
        blocks.append("\n".join(block))
    return "\n".join(prose), blocks


def _prose_without_code(text: str) -> str:
    prose, _ = _split(COMMENT.sub("", text))
    return INLINE_CODE.sub("", prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (github-slugger): lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = text.replace("`", "").strip().lower()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in " -_" or cat[0] in "LMN":
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = _split(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose.splitlines():
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    found.update(re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", prose))
    return found


def links(path: Path) -> list[str]:
    prose = _prose_without_code(path.read_text(encoding="utf-8"))
    return MD_LINK.findall(prose) + REF_LINK.findall(prose) + HTML_LINK.findall(prose)


def test_docs_exist():
    assert (ROOT / "README.md").is_file()
    assert len(DOCS) > 1, "docs/*.md is empty"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(doc: Path):
    problems = []
    text = doc.read_text(encoding="utf-8")
    if "../shared" in text:
        problems.append("mentions ../shared (outside the repository)")
    for target in links(doc):
        if target.startswith(EXTERNAL):
            continue
        path_part, _, anchor = target.partition("#")
        if not path_part:
            resolved = doc
        else:
            if path_part.startswith("/") or re.match(r"^[a-zA-Z]:[\\/]", path_part) or "://" in path_part:
                problems.append(f"{target}: not a relative link")
                continue
            resolved = (doc.parent / path_part).resolve()
            if not resolved.is_relative_to(ROOT):
                problems.append(f"{target}: points outside the repository")
                continue
            if not resolved.exists():
                problems.append(f"{target}: no such file")
                continue
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading with anchor #{anchor} in {resolved.relative_to(ROOT)}")
    assert not problems, f"{doc.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


# --- command lines ------------------------------------------------------------------------------


def _commands() -> dict[str, set[str]]:
    """``{"learn": {"--output", "-o", ...}, "portdist build": {...}, "": global options}``."""
    import typer

    from gpsgpu.cli import app

    table: dict[str, set[str]] = {}

    def walk(cmd, path: list[str]) -> None:
        opts = {"--help"}
        for p in cmd.params:
            if p.param_type_name == "option":
                opts.update(p.opts)
                opts.update(p.secondary_opts)
        table[" ".join(path)] = opts
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return table


GLOBAL_WITH_VALUE = {"--log-file", "-l"}
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "&"}


def _command_lines(text: str) -> list[str]:
    """Command lines naming gpsgpu: from code blocks (continuations joined) and inline code spans."""
    text = COMMENT.sub("", text)
    prose, blocks = _split(text)
    lines: list[str] = []
    for block in blocks:
        lines.extend(block.replace("\\\n", " ").splitlines())
    lines.extend(m.group(2) for m in INLINE_CODE.finditer(prose))
    return [line for line in lines if re.search(r"(^|\s)(\$\s+)?(python3? -m )?gpsgpu(:\S+)?\s+\S", line)]


def _tokens(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("$ "):
        line = line[2:]
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        return list(lexer)
    except ValueError:
        return line.split()


def _check_line(line: str, table: dict[str, set[str]]) -> list[str]:
    problems = []
    tokens = _tokens(line)
    starts = [i for i, t in enumerate(tokens) if t == "gpsgpu" or re.fullmatch(r"gpsgpu:[\w.-]+", t)]
    for start in starts:
        i = start + 1
        while i < len(tokens) and tokens[i].startswith("-"):  # global options
            if tokens[i] not in table[""]:
                problems.append(f"{line!r}: unknown global option {tokens[i]}")
            i += 2 if tokens[i] in GLOBAL_WITH_VALUE else 1
        if i >= len(tokens):
            continue
        name = tokens[i]
        if name.upper() == name or name in ("...", "<command>", "COMMAND"):
            continue  # a placeholder: gpsgpu COMMAND --help
        if f"{name} {tokens[i + 1]}" in table if i + 1 < len(tokens) else False:
            name = f"{name} {tokens[i + 1]}"
            i += 1
        if name not in table or name == "":
            problems.append(f"{line!r}: no command 'gpsgpu {name}'")
            continue
        for tok in tokens[i + 1 :]:
            if tok in SHELL_OPERATORS or tok in ("gpsgpu",):
                break
            flag = tok.split("=", 1)[0]
            is_option = re.fullmatch(r"--[a-z][\w-]*", flag) or re.fullmatch(r"-[a-zA-Z]", flag)
            if is_option and flag not in table[name]:
                problems.append(f"{line!r}: 'gpsgpu {name}' has no option {flag}")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_command_lines_use_real_options(doc: Path):
    table = _commands()
    problems = []
    for line in _command_lines(doc.read_text(encoding="utf-8")):
        problems.extend(_check_line(line, table))
    assert not problems, f"{doc.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


def test_cli_reference_lists_only_real_options():
    """docs/cli.md: each `## gpsgpu <command>` section's option rows exist for that command."""
    table = _commands()
    text = COMMENT.sub("", (ROOT / "docs" / "cli.md").read_text(encoding="utf-8"))
    problems = []
    sections = re.split(r"^## `gpsgpu ([a-z][\w -]*)`\s*$", text, flags=re.M)
    documented = set()
    for name, body in zip(sections[1::2], sections[2::2], strict=True):
        documented.add(name)
        if name not in table:
            problems.append(f"no command 'gpsgpu {name}'")
            continue
        rows = re.findall(r"^\|\s*(`-[^|]*)\|", body, flags=re.M)
        flags = [flag for row in rows for flag in re.findall(r"`(-{1,2}[\w-]+)`", row)]
        problems.extend(f"'gpsgpu {name}' has no option {flag}" for flag in flags if flag not in table[name])
    leaves = {name for name in table if name and not any(o.startswith(name + " ") for o in table)}
    missing = sorted(leaves - documented)
    if missing:
        problems.append(f"commands without a section: {', '.join(missing)}")
    assert not problems, "docs/cli.md:\n  " + "\n  ".join(problems)


def test_cli_reference_lists_every_option():
    """docs/cli.md: each command's section has a row for every option the command has (a new flag,
    such as --force, must be documented), and no TODO comment is left anywhere in the docs."""
    table = _commands()
    text = COMMENT.sub("", (ROOT / "docs" / "cli.md").read_text(encoding="utf-8"))
    sections = re.split(r"^## `gpsgpu ([a-z][\w -]*)`\s*$", text, flags=re.M)
    problems = []
    for name, body in zip(sections[1::2], sections[2::2], strict=True):
        rows = re.findall(r"^\|\s*(`-[^|]*)\|", body, flags=re.M)
        listed = {flag for row in rows for flag in re.findall(r"`(-{1,2}[\w-]+)`", row)}
        missing = sorted(table.get(name, set()) - listed - {"--help"})
        if missing:
            problems.append(f"'gpsgpu {name}': no row for {', '.join(missing)}")
    problems.extend(
        f"{doc.relative_to(ROOT)}: a TODO comment is left"
        for doc in DOCS
        if re.search(r"<!--\s*TODO", doc.read_text(encoding="utf-8"))
    )
    assert not problems, "docs:\n  " + "\n  ".join(problems)
