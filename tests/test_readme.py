"""The README and the pages it links to describe the code as it is."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]


def tree_block() -> list[str]:
    """The lines of the fenced block under "How it is built"."""
    section = README.read_text(encoding="utf-8").split("## How it is built", 1)[1]
    return section.split("```\n", 2)[1].splitlines()


def listed_folders(top: str) -> set[str]:
    """The folders the tree shows under ``top/`` (indented lines that name a folder)."""
    lines = tree_block()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"{top}/"))
    folders = set()
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        folders.add(line.split()[0].rstrip("/"))
    return folders


def package_folders(top: str) -> set[str]:
    return {path.parent.name for path in (ROOT / top).glob("*/__init__.py")}


def test_the_readme_tree_shows_every_folder_of_the_core_and_nothing_else():
    assert listed_folders("lstm_core") == package_folders("lstm_core")


def test_the_readme_tree_shows_every_folder_of_the_app_and_nothing_else():
    pages = {"pages"} if (ROOT / "app" / "pages").is_dir() else set()
    assert listed_folders("app") == package_folders("app") | pages


def test_the_top_level_folders_in_the_tree_exist():
    tops = {line.split()[0].rstrip("/") for line in tree_block() if line and not line.startswith(" ")}
    assert {top for top in tops if not (ROOT / top).is_dir()} == set()


def test_every_relative_link_in_the_readme_and_docs_leads_to_a_file():
    broken = []
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            if not (document.parent / target).exists():
                broken.append(f"{document.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_readme_stays_short_enough_to_read_to_the_end():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200
