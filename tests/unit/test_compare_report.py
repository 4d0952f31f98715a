"""``vlfuse compare`` prints every design name and number whole, on any console width, tty or not."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from vlfuse.compare.report import markdown, print_tables, rows

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "compare-quick" / "results.json"


@pytest.mark.parametrize("terminal", [False, True])
def test_an_80_column_console_shows_every_full_name_and_cell(terminal):
    results = json.loads(RESULTS.read_text())
    out = io.StringIO()
    print_tables(results, Console(file=out, width=80, force_terminal=terminal, color_system=None))
    text = out.getvalue()
    assert "…" not in text
    lines = text.splitlines()
    for name in results["designs"]:  # llava-linear and llava-mlp among them, not two "llava-…"
        assert any(f" {name} " in line for line in lines), name
    _, body = rows(results)
    for row in body:  # every number too (params like 1,327,232 were cut to "1,327,…")
        line = next(line for line in lines if f" {row[0]} " in line)
        assert all(cell in text for cell in row), row
        assert row[1] in line


def test_a_log_gets_the_results_md_table():
    results = json.loads(RESULTS.read_text())
    out = io.StringIO()
    print_tables(results, Console(file=out, width=80, force_terminal=False))
    assert out.getvalue().strip() == markdown(results).strip()
