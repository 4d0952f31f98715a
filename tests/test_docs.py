"""The docs stay true to the code: a page per registered design, links that resolve, rows copied from the run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import vlfuse.connectors
import vlfuse.encoders
import vlfuse.injection  # noqa: F401  (the three imports fill the registries)
from vlfuse.compare.designs import design_names
from vlfuse.registry import CONNECTORS, ENCODERS, INJECTIONS

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "docs" / "designs"
# pages other parts of the project write; linked from the README before they land
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _pages() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(DESIGNS.glob("*.md"))}


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs" / "designs").glob("*.md")),
            *sorted((ROOT / "docs" / "studies").glob("*.md"))]


@pytest.mark.parametrize("name", [*ENCODERS.names(), *CONNECTORS.names(), *INJECTIONS.names(), *design_names()])
def test_every_registered_design_and_compare_row_has_a_page(name):
    assert any(f"`{name}`" in text for text in _pages().values()), f"no docs/designs page names `{name}`"


def test_every_design_page_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    for page in _pages():
        assert f"(docs/designs/{page})" in readme, page


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    for target in LINK.findall(path.read_text()):
        if target.startswith(("http://", "https://", "#")):
            continue
        file = (path.parent / target.split("#", 1)[0]).resolve()
        assert file.exists(), f"{path.relative_to(ROOT)} links {target}, which does not exist"


def test_compare_rows_in_the_docs_are_the_committed_run():
    results = (ROOT / "docs" / "compare-quick" / "results.md").read_text().splitlines()
    names = set(design_names())
    for path in _markdown_files():
        for line in path.read_text().splitlines():
            cells = line.split("|")
            if len(cells) > 16 and cells[1].strip() in names:  # a full results row
                assert line in results, f"{path.relative_to(ROOT)}: {cells[1].strip()} row differs from results.md"


def test_docs_say_what_a_probe_studies_not_when_it_ran():
    """Docs and probes are named by what they study: no run-counter names (``s5-base.yaml``, ``s6_spatial.py``)
    and no references to them or to the order things were found in."""
    counter = re.compile(r"(?<![\w.-])s\d+[-_][\w-]+\.(?:py|yaml)|before the init change", re.I)
    files = [*_markdown_files(), *sorted((ROOT / "docs").rglob("*.py")), *sorted((ROOT / "docs").rglob("*.yaml"))]
    for path in files:
        assert not re.match(r"s\d+[-_]", path.name), f"{path.relative_to(ROOT)}: name it by what it studies"
        hits = [line for line in path.read_text().splitlines() if counter.search(line)]
        assert not hits, f"{path.relative_to(ROOT)}: {hits[:2]}"


@pytest.mark.parametrize("path", sorted((ROOT / "docs" / "studies" / "probes").glob("*")), ids=lambda p: p.name)
def test_every_probe_names_itself_in_its_usage_and_is_cited_by_a_study(path):
    """A probe's header command runs the probe under its own name, and a study page says what it found."""
    from vlfuse.config import load_config
    from vlfuse.train.config import RunConfig

    text = path.read_text()
    head = text[:1200]
    rel = f"docs/studies/probes/{path.name}"
    assert rel in head, f"{path.name}: its usage line should name {rel}"
    studies = " ".join(p.read_text() for p in (ROOT / "docs" / "studies").glob("*.md"))
    assert path.name in studies, f"{path.name} is cited by no page in docs/studies/"
    if path.suffix == ".yaml":
        load_config(RunConfig, str(path))  # a probe config still loads (an unknown key would raise)
