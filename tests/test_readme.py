"""The README runs: its Python example executes (paths pointed at tiny local models), its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import tiny_vlm_config
from tests.parity.test_llava import _save_tiny_llava

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_example_runs(tmp_path, capsys):
    from vlfuse.data.dataset import scene_texts
    from vlfuse.data.scenes import ScenesConfig
    from vlfuse.model import VLM

    model = VLM.from_config(tiny_vlm_config(), texts=scene_texts(ScenesConfig()))
    model.save_pretrained(str(tmp_path / "demo"))
    _save_tiny_llava(tmp_path / "llava")
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert "runs/demo/model" in code and "path/to/saved/LlavaForConditionalGeneration" in code
    code = code.replace("runs/demo/model", str(tmp_path / "demo"))
    code = code.replace("path/to/saved/LlavaForConditionalGeneration", str(tmp_path / "llava"))
    assert len(code.strip().splitlines()) <= 10
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "reference:" in out and "->" in out


def test_quick_start_is_the_two_make_targets():
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("```", 2)[1]
    assert quick.split() == ["make", "demo", "make", "test"]
    makefile = (README.parent / "Makefile").read_text()
    assert "\ndemo:" in makefile and "\ntest:" in makefile


def test_documented_subcommands_exist():
    from vlfuse.cli.app import COMMANDS

    documented = set(re.findall(r"`vlfuse (\w+)", README.read_text()))
    assert documented <= set(COMMANDS), documented - set(COMMANDS)


def test_compare_table_comes_from_the_committed_run():
    """The README's comparison table is the ``results.md`` of the run committed under docs/, line for line."""
    run = README.parent / "docs" / "compare-quick"
    table = [line for line in (run / "results.md").read_text().splitlines() if line.startswith("|")]
    assert len(table) >= 2 + 4 and all(line in README.read_text().splitlines() for line in table)
    import json

    results = json.loads((run / "results.json").read_text())
    assert [row.split("|")[1].strip() for row in table[2:]] == list(results["designs"])
