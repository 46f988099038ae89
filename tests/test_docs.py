"""The docs stand alone: every repository file they name exists, and none leans on a file
outside the repository.

Scanned: docs/ (Markdown and YAML), README.md, config/, systemd/, and every Python file of
vmd/, tests/, bench/ and scripts/ (docstrings, comments and help texts alike). A reference is a
path under one of the repository's top folders (`docs/fsm.md`, `vmd/fsm/power.py`,
`tests/fsm/`), a bare Markdown name (`fsm.md`: under docs/ or at the top), or a numbered
section of one of the project's docs (`docs/fsm.md §3.6`, `protocol.md §9`), which must be one
of that doc's headings, or a Markdown link to a heading (`[vmctl](protocol.md#7-vmctl)`). The
contract and research notes the project started from live outside the repository; naming one of
them fails, whatever the path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TOP_FOLDERS = ("docs", "vmd", "tests", "bench", "scripts", "config", "systemd")
SUFFIXES = {".md", ".py", ".toml", ".yaml", ".yml", ".service", ".conf", ".rules", ".json",
            ".sh", ""}

# Files of the original contract and of the research notes (outside the repository). Spelled
# in pieces so that this file does not name them itself.
OUTSIDE_NAMES = ("vm-status", "vmadm", "libraries", "esdc_vm_status", "peers", "STYLE")
OUTSIDE = re.compile(
    r"(?<![\w-])(?:" + "|".join(re.escape(n) for n in OUTSIDE_NAMES) + r")\.md\b"
    r"|(?<![\w/])(?:spec|reference)/[\w.-]+\.md\b"
    r"|/work/shared\b"
)

PATH = re.compile(r"(?<![\w./$-])((?:" + "|".join(TOP_FOLDERS) + r")/[\w./*@-]*)")
# What names a file: a path with a suffix (`vmd/fsm/power.py`) or a folder (`vmd/fsm/`);
# `vmd/raw` (a ratio) or `vmd/vmd` (user/password) is not a path.
LOOKS_LIKE_FILE = re.compile(r"(?:\.[\w*]+|/)$")
# Written at build time (setup.py copies config/ and systemd/ into the wheel).
GENERATED = ("vmd/_deploy/",)
BARE_MD = re.compile(r"(?<![\w./-])([\w-]+\.md)\b")
# `docs/fsm.md §3.6`, `protocol.md §9`, `fsm.md, §2`: the first section of a reference.
SECTION = re.compile(r"(?<![\w.-])((?:docs/)?[\w-]+\.md),? §(\d+(?:\.\d+)?)")
HEADING = re.compile(r"^#+ +§?(\d+(?:\.\d+)*)[.) ]", re.MULTILINE)
# A Markdown link to a heading: `[text](#anchor)`, `[text](bus.md#anchor)`.
ANCHOR = re.compile(r"\]\(([\w./-]*?\.md)?#([^)\s]+)\)")


def _sources() -> Iterator[Path]:
    yield ROOT / "README.md"
    for folder in ("docs", "config", "systemd", "vmd", "tests", "bench", "scripts"):
        base = ROOT / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            parts = path.relative_to(ROOT).parts
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            if path.is_file() and path.suffix in SUFFIXES and path != Path(__file__).resolve():
                if folder in ("vmd", "tests", "bench") and path.suffix != ".py":
                    continue
                yield path


def _exists(ref: str) -> bool:
    ref = ref.rstrip(".")
    if any(c in ref for c in "*?["):
        return any(ROOT.glob(ref))
    return (ROOT / ref).exists()


@cache
def _sections(doc: Path) -> frozenset[str]:
    return frozenset(HEADING.findall(doc.read_text(encoding="utf-8")))


@cache
def _anchors(doc: Path) -> frozenset[str]:
    """GitHub's ids of the doc's headings: lower case, punctuation dropped, spaces to `-`."""
    ids: set[str] = set()
    fence = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        fence ^= line.startswith("```")
        heading = None if fence else re.match(r"#{1,6} +(.*?)\s*$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            ids.add(slug if slug not in ids else f"{slug}-1")
    return frozenset(ids)


def _doc(name: str) -> Path | None:
    for candidate in (ROOT / name, ROOT / "docs" / name):
        if candidate.is_file():
            return candidate
    return None


def _problems(rel: str, text: str) -> Iterator[str]:
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"{rel}:{lineno}"
        for m in OUTSIDE.finditer(line):
            yield f"{where}: {m.group(0)!r} is outside the repository (cite the project's doc)"
        for m in PATH.finditer(line):
            ref = m.group(1).rstrip(".,;:)`'\"")
            if (LOOKS_LIKE_FILE.search(ref) and not ref.startswith(GENERATED)
                    and not _exists(ref)):
                yield f"{where}: {ref!r} does not exist"
        for m in BARE_MD.finditer(line):
            if _doc(m.group(1)) is None and not OUTSIDE.fullmatch(m.group(1)):
                yield f"{where}: {m.group(1)!r} is neither under docs/ nor at the top"
        for m in ANCHOR.finditer(line):
            target = (ROOT / rel).parent / m.group(1) if m.group(1) else ROOT / rel
            if (target.suffix == ".md" and target.is_file()
                    and m.group(2) not in _anchors(target.resolve())):
                yield f"{where}: {m.group(1) or rel} has no heading #{m.group(2)}"
        for m in SECTION.finditer(line):
            doc = _doc(m.group(1))
            if doc is not None and m.group(2) not in _sections(doc):
                yield f"{where}: {m.group(1)} has no section §{m.group(2)}"


def test_docs_name_only_files_of_the_repository() -> None:
    problems = [
        problem
        for path in _sources()
        for problem in _problems(str(path.relative_to(ROOT)),
                                 path.read_text(encoding="utf-8", errors="replace"))
    ]
    if problems:
        pytest.fail(f"{len(problems)} broken references:\n" + "\n".join(problems), pytrace=False)


BAD = [
    "see " + OUTSIDE_NAMES[0] + ".md §3",
    "(reference " + OUTSIDE_NAMES[1] + ".md §1.2)",
    "the contract is `spec/protocol.md`",
    "docs/no-such-page.md",
    "vmd/fsm/no_such_module.py",
    "no-such-page.md",
    "docs/fsm.md §42",
    "facts in /work/shared/reference",
    "the dashboard, docs/no-such-folder/",
    "[the table](fsm.md#no-such-heading)",
]
GOOD = [
    "docs/fsm.md §3.6", "protocol.md §9", "docs/driver.md", "vmd/fsm/", "tests/fsm/*.py",
    "/etc/vmd/vmd.toml", "README.md", "$VMADM_SIM_ROOT/iso", "vmd.fsm.power", "bus.md §6",
    "systemd/vmd-agent@.service", "vmd/raw", "as vmd/vmd",
    "[the table](fsm.md#the-transition-table)", "[vmctl](protocol.md#7-vmctl)",
]


def test_the_check_fails_on_each_kind_of_broken_reference() -> None:
    for line in BAD:
        assert len(list(_problems("docs/probe.md", line))) == 1, line
    for line in GOOD:
        assert not list(_problems("docs/probe.md", line)), line
