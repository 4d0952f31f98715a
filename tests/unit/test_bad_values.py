"""Bad values get one clear line naming the value and the fix, and exit code 2: never a traceback from torch."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_LLAMA, tiny_vlm
from vlfuse.cli.app import main
from vlfuse.config import ConfigError, load_config
from vlfuse.train.config import RunConfig


def _fails(argv: list[str], capsys: pytest.CaptureFixture, *fragments: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.mark.parametrize(("override", "fragments"), [
    ("stages.0.min_lr_ratio=-0.5", ("min_lr_ratio must be in [0, 1]", "-0.5")),
    ("stages.0.warmup_steps=-3", ("warmup_steps must be >= 0", "-3")),
    ("stages.0.betas=[0.9,1.5]", ("betas must be two numbers in [0, 1)",)),
    ("stages.0.clip=-1", ("clip must be >= 0",)),
    ("train.checkpoint_every=0", ("checkpoint_every must be >= 1", "got 0")),
    ("train.eval_batch_size=0", ("eval_batch_size must be >= 1",)),
    ("train.keep_checkpoints=0", ("keep_checkpoints must be >= 1",)),
    ("train.threads=-3", ("threads must be >= 0", "-3")),
    ("train.device=gpu", ("device 'gpu' is not one of auto, cpu, cuda",)),
    ("model.llm.config.hidden_sizee=64", ("unknown key 'hidden_sizee'", "hidden_size")),
    ("model.llm.config.model_type=lama", ("model_type 'lama'",)),
])
def test_train_refuses_bad_values_before_anything_runs(override, fragments, tmp_path, capsys):
    out = tmp_path / "run"
    _fails(["train", "--set", override, "--out", str(out)], capsys, *fragments)
    assert not (out / "checkpoints").exists()


@pytest.mark.skipif(torch.backends.cuda.is_built(), reason="this torch build has CUDA")
def test_cuda_on_a_cpu_build_names_the_fix(tmp_path, capsys):
    _fails(["train", "--set", "train.device=cuda", "--out", str(tmp_path / "r")], capsys,
           "this torch build has no CUDA", "train.device=cpu")


def test_a_yaml_exponent_arrives_as_a_float(tmp_path):
    """YAML 1.1 reads ``1e-6`` as a string; the LLM config key takes the type of the class's default."""
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  llm:\n    config: {model_type: llama, hidden_size: 32, intermediate_size: 64,\n"
                    "             num_hidden_layers: 1, num_attention_heads: 2, rms_norm_eps: 1e-6}\n")
    run = load_config(RunConfig, path)
    assert run.model.llm.config["rms_norm_eps"] == pytest.approx(1e-6)
    assert isinstance(run.model.llm.config["rms_norm_eps"], float)


def test_an_unknown_llm_key_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"hidden_sizee.*hidden_size"):
        load_config(RunConfig, None, [f"model.llm.config={dict(TINY_LLAMA, hidden_sizee=64)}"])


@pytest.mark.parametrize(("flags", "fragment"), [
    (["--top-p", "0"], "top_p=0.0: need a number in (0, 1]"),
    (["--top-p", "1.5"], "top_p=1.5"),
    (["--temperature", "-1"], "temperature=-1.0: need a finite number >= 0"),
    (["--temperature", "nan"], "temperature=nan"),
    (["--temperature", "inf"], "temperature=inf"),
    (["--max-new-tokens", "-2"], "max_new_tokens=-2"),
    (["--max-new-tokens", "600"], "the LLM's limit is 256"),
])
def test_generate_refuses_bad_sampling_settings(flags, fragment, tmp_path, capsys):
    model_dir = tmp_path / "m"
    tiny_vlm().save_pretrained(str(model_dir))  # TINY_LLAMA: 256 positions
    _fails(["generate", "--model", str(model_dir), "--prompt", "what color is the circle ?", *flags], capsys,
           fragment)


def test_the_library_refuses_the_same_settings():
    model = tiny_vlm()
    with pytest.raises(ValueError, match=r"top_p=0"):
        model.generate("what color is the circle ?", top_p=0.0)
    with pytest.raises(ValueError, match=r"new tokens needs \d+ positions but the LLM's limit is 256"):
        model.generate("what color is the circle ?", max_new_tokens=1000)


@pytest.mark.parametrize("command", [
    ["train", "--set", "stages.0.steps=1"],
    ["compare", "--designs", "blind"],
    ["data", "scenes", "--n", "2"],
])
def test_an_out_that_is_a_file_is_refused(command, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    _fails([*command, "--out", str(target)], capsys, "is a file", "must be a folder")
    _fails([*command, "--out", str(target / "below")], capsys, "which is a file")
    assert target.read_text() == "not a folder"


@pytest.mark.parametrize("argv", [
    ["compare", "--designs", "../recipes/blip2"],
    ["compare", "--designs", "/etc/passwd"],
    ["train", "--recipe", "../llava"],
])
def test_names_are_never_paths(argv, tmp_path, capsys):
    _fails([*argv, "--out", str(tmp_path / "o")], capsys)
    assert not (tmp_path / "o").exists()
