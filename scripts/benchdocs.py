"""Shared by the bench_* scripts: replace one ``## Heading`` section of docs/BENCHMARKS.md with measured text.

Figures in the docs are only ever written by the scripts that measured them (never hand-typed); each script
owns one section and leaves the others alone.
"""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"


def replace_section(heading: str, section: str, docs: Path = DOCS) -> None:
    """Replace the section that starts with the line ``heading`` (e.g. ``"## Speed"``) up to the next ``## ``
    heading by ``section`` (which starts with that heading line); append it if the file has no such section."""
    text = docs.read_text(encoding="utf-8") if docs.is_file() else "# Benchmarks\n\n"
    section = section.rstrip("\n") + "\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = text.find("\n## ", start + 1)
        text = text[:start] + section + ("\n" + text[nxt + 1 :] if nxt >= 0 else "")
    docs.write_text(text, encoding="utf-8")
