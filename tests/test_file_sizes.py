"""House style R1, enforced: no source file over 400 lines, no function over 80 (budgets are 300 / 60)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vlfuse"
BENCH = Path(__file__).resolve().parents[1] / "bench"


def _files() -> list[Path]:
    return sorted(SRC.rglob("*.py")) + sorted(BENCH.rglob("*.py"))


def test_no_file_over_400_lines():
    long = {str(p.relative_to(SRC.parent)): n for p in _files() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these files (limit 400 lines, budget 300): {long}"


def test_no_function_over_80_lines():
    long = {}
    for path in _files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long[f"{path.name}:{node.name}"] = n
    assert not long, f"split these functions (limit 80 lines, budget 60): {long}"
