"""The README runs: its Python example executes as written (offline), its commands and figures are the repository's."""

from __future__ import annotations

import json
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """The example builds, saves and loads its own tiny LLaVA in the working folder: nothing to substitute."""
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 15
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "mlp concat"  # from_transformers mapped LLaVA-1.5 onto the mlp connector and concat
    assert 1 <= len(out[-1].split()) <= 4  # max_new_tokens=4 words of the tiny vocabulary
    assert (tmp_path / "tiny-llava" / "config.json").is_file()


def test_loading_example_runs_on_a_saved_llava(tmp_path):
    """The "Loading a transformers checkpoint" block on a tiny LLaVA saved with its processor (parity: tests/parity)."""
    from PIL import Image
    from transformers import CLIPImageProcessorPil

    from tests.parity.test_llava import _save_tiny_llava

    _save_tiny_llava(tmp_path, image_processor=CLIPImageProcessorPil(size={"shortest_edge": 8},
                                                                      crop_size={"height": 8, "width": 8}))
    section = README.read_text().split("## Loading a transformers checkpoint", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    names = {"folder": str(tmp_path), **{f"img_{k}": Image.new("RGB", (12, 9), c) for k, c in
                                         zip("abc", ("red", "green", "blue"))}}
    exec(compile(code, "README.md", "exec"), names)
    assert names["batch"]["image_counts"].tolist() == [1, 2]
    assert names["logits"].shape[:2] == names["batch"]["input_ids"].shape
    assert names["new_ids"].shape[0] == 2 and 1 <= names["new_ids"].shape[1] <= 16


def test_readme_stays_under_300_lines():
    n = len(README.read_text().splitlines())
    assert n < 300, f"README.md has {n} lines; move the long parts to docs/ and link them"


def test_quick_start_is_the_two_make_targets():
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("```", 2)[1]
    assert quick.split() == ["make", "demo", "make", "test"]
    makefile = (README.parent / "Makefile").read_text()
    assert "\ndemo:" in makefile and "\ntest:" in makefile


def test_documented_subcommands_exist():
    from vlfuse.cli.app import COMMANDS

    text = README.read_text()
    documented = set(re.findall(r"`vlfuse (\w+)", text))
    assert documented <= set(COMMANDS), documented - set(COMMANDS)
    table = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    assert set(COMMANDS) <= set(re.findall(r"^\| `vlfuse (\w+)", table, re.M))  # one line per command at least


def test_documented_flags_exist():
    """Every ``--flag`` in a command-table line is an option of that subcommand's parser."""
    from vlfuse.cli.app import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    table = README.read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]
    for name, rest in re.findall(r"^\| `vlfuse (\w+)(.*)$", table, re.M):
        parser = sub[name]
        if name == "data":
            parser = next(a for a in parser._actions if a.dest == "dataset").choices["scenes"]
        known = {o for a in parser._actions for o in a.option_strings}
        flags = set(re.findall(r"(--[a-z][a-z-]*)", rest))
        assert flags <= known, (name, flags - known)


def test_compare_table_comes_from_the_committed_run():
    """The README's comparison table is the ``results.md`` of the run committed under docs/, line for line."""
    run = README.parent / "docs" / "compare-quick"
    table = [line for line in (run / "results.md").read_text().splitlines() if line.startswith("|")]
    assert len(table) >= 2 + 4 and all(line in README.read_text().splitlines() for line in table)
    results = json.loads((run / "results.json").read_text())
    assert [row.split("|")[1].strip() for row in table[2:]] == list(results["designs"])
