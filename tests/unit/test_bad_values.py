"""Values that should not be accepted: one clear line and exit code 2 from ``vlfuse.cli.app.main``, before any
model is built where that is possible; and transformers config keys checked against their model_type's class."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_LLAMA, tiny_vlm
from vlfuse.cli.app import main
from vlfuse.config import ConfigError, from_dict, load_config
from vlfuse.generate import check_positions, generate_ids
from vlfuse.llm import LLMConfig, build_llm
from vlfuse.model import VLM, VLMConfig

TRAIN_SETS = [
    ("stages.0.min_lr_ratio=-0.5", "min_lr_ratio must be in [0, 1]"),
    ("stages.0.warmup_steps=-1", "warmup_steps must be >= 0"),
    ("train.checkpoint_every=0", "checkpoint_every must be >= 1"),
    ("train.keep_checkpoints=0", "keep_checkpoints must be >= 1"),
    ("train.eval_batch_size=0", "eval_batch_size must be >= 1"),
    ("train.threads=-3", "threads must be >= 0"),
    ("train.log_every=0", "log_every must be >= 1"),
    ("train.seed=-1", "seed must be in [0, 2**32)"),
    ("train.device=gpu", "device 'gpu' is not one of auto, cpu, cuda, cuda:N, mps"),
    ("stages.0.betas=[0.9,1.0]", "betas must be two numbers in [0, 1)"),
    ("stages.0.weight_decay=-1", "weight_decay must be >= 0"),
    ("stages.0.clip=.nan", "clip must be >= 0"),
    ("model.llm.config.hidden_sizee=64", "did you mean 'hidden_size'?"),
    ("model.llm.config.model_type=lama", "did you mean 'llama'?"),
    ("model.encoder.width=0", "vit width=0 must be >= 1"),
]


@pytest.mark.parametrize(("setting", "fragment"), TRAIN_SETS)
def test_train_refuses_bad_values_before_training(setting, fragment, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.skipif(torch.backends.cuda.is_built(), reason="needs a torch build without CUDA")
def test_cuda_on_a_cpu_build_names_the_fix(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--set", "train.device=cuda"]) == 2
    assert "this torch build has no CUDA; use train.device=cpu or auto" in capsys.readouterr().err


def _file(tmp_path):
    (tmp_path / "afile").write_text("x")
    return str(tmp_path / "afile")


OUT_COMMANDS = [["train"], ["demo"], ["compare", "--quick"], ["data", "scenes", "--n", "2"]]


@pytest.mark.parametrize("command", OUT_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("under", [False, True], ids=["file", "under-a-file"])
def test_out_that_is_a_file_is_refused(command, under, tmp_path, capsys):
    out = _file(tmp_path) + ("/sub" if under else "")
    assert main([*command, "--out", out]) == 2
    err = capsys.readouterr().err
    assert f"--out {out!r}" in err and "must be a folder" in err


@pytest.mark.parametrize(("argv", "fragment"), [
    (["compare", "--designs", "../recipes/blip2"], "unknown design '../recipes/blip2'; designs are: "),
    (["train", "--config", "recipes/blip2"], "--config 'recipes/blip2' does not exist"),
    (["train", "--config", "llavaa"], "is neither a file nor a preset; presets are: llava"),
    (["train", "--recipe", "../recipes/blip2"], "is not a recipe; recipes are: blip2"),
    (["compare", "--jobs", "0"], "--jobs 0: need at least 1"),
    (["data", "scenes", "--n", "0"], "--n 0: need at least 1 sample"),
    (["data", "scenes", "--name", "../x.json"], "must be a plain file name inside --out"),
])
def test_names_and_counts_are_checked(argv, fragment, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert fragment in capsys.readouterr().err


def test_config_folder_is_not_a_config_file(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "out"), "--config", str(tmp_path)]) == 2
    assert "is a folder, not a config file" in capsys.readouterr().err


def test_cost_plot_into_a_folder_is_refused(tmp_path, capsys):
    assert main(["cost", "--plot", str(tmp_path)]) == 2
    assert "is a folder; pass a PNG file path" in capsys.readouterr().err


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("m")
    tiny_vlm().save_pretrained(str(folder / "model"))
    return str(folder / "model")


@pytest.mark.parametrize(("flags", "fragment"), [
    (["--top-p", "0"], "top_p=0.0: need a number in (0, 1]"),
    (["--top-p", "1.5"], "top_p=1.5: need a number in (0, 1]"),
    (["--temperature", "-1"], "temperature=-1.0: need a finite number >= 0"),
    (["--temperature", "nan"], "temperature=nan: need a finite number >= 0"),
    (["--temperature", "inf"], "temperature=inf: need a finite number >= 0"),
    (["--max-new-tokens", "-1"], "max_new_tokens=-1: need a whole number >= 0"),
])
def test_generate_refuses_bad_sampling_settings(flags, fragment, capsys, tmp_path):
    assert main(["generate", "--model", str(tmp_path / "not-loaded"), "--prompt", "what", *flags]) == 2
    assert fragment in capsys.readouterr().err  # refused before the (missing) model is even looked at


def test_generate_refuses_to_run_past_the_position_limit(saved, tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    argv = ["generate", "--model", saved, "--image", str(tmp_path / "a.png"), "--prompt", "what color"]
    assert main([*argv, "--max-new-tokens", "600"]) == 2
    assert ("prompt of 23 tokens (16 of them visual) + 600 new tokens needs 622 positions but the LLM's limit is "
            "256; use max_new_tokens <= 234 (--max-new-tokens)") in capsys.readouterr().err
    model = VLM.from_pretrained(saved).eval()
    proc = model.processor()
    batch = proc.collate([proc.encode_prompt("<image>\nwhat color", [Image.new("RGB", (8, 8))])], "left")
    with pytest.raises(ValueError, match=r"\+ 235 new tokens needs 257 positions but the LLM's limit is 256"):
        generate_ids(model, batch, max_new_tokens=235)  # the library says the same
    check_positions(model, batch["input_ids"], batch["attention_mask"], 234)  # the suggested value fits


def test_unknown_llm_key_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown key 'hidden_sizee' in config of model_type 'llama' "
                                          r"\(did you mean 'hidden_size'\?\); valid keys: .*hidden_size"):
        from_dict(LLMConfig, {"config": {**TINY_LLAMA, "hidden_sizee": 64}}, "model.llm")


def test_unknown_vision_key_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown key 'patch_sise'.*did you mean 'patch_size'"):
        from_dict(VLMConfig, {"encoder": {"kind": "hf", "config": {"model_type": "clip_vision_model",
                                                                    "patch_sise": 2}}})


def test_yaml_exponent_without_dot_builds_a_float(tmp_path):
    (tmp_path / "run.yaml").write_text("llm:\n  config: {model_type: llama, hidden_size: 32, intermediate_size: 64,"
                                       " num_hidden_layers: 1, num_attention_heads: 2, rms_norm_eps: 1e-6}\n")
    config = load_config(VLMConfig, tmp_path / "run.yaml")
    assert config.llm.config["rms_norm_eps"] == 1e-06
    llm = build_llm(config.llm, vocab_size=16)
    assert isinstance(llm.config.rms_norm_eps, float) and llm.config.rms_norm_eps == 1e-06


@pytest.mark.parametrize(("flags", "fragment"), [
    (["--batch-size", "0"], "--batch-size 0: need at least 1"),
    (["--n", "0"], "--n 0: need at least 1"),
    (["--n", "-1"], "--n -1: need at least 1"),
])
def test_eval_refuses_empty_batches_and_counts(flags, fragment, tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "no-model"), *flags]) == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "fragment"), [
    (["params", "--vision-dim", "64", "--llm-dim", "64", "--every", "0"], "--every=0 must be >= 1"),
    (["tokens", "--model", "llava-1.5", "--size", "336x336", "--context", "0"], "--context=0 must be >= 1"),
    (["cost", "--design", "concat", "--llm", "llama-3-8b", "--images", "1", "--vision-dims",
      "layers=24,hidden=1024,heads=16,ffn=4096,patch=0,image=336"], "patch=0 must be >= 1"),
])
def test_zero_is_refused_not_read_as_the_default(argv, fragment, capsys):
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(monkeypatch):
    """``vlfuse compare --list | head`` closes stdout early: exit 141 (SIGPIPE's code), no traceback."""

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["compare", "--list"]) == 141


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_an_empty_config_file_is_refused(text, tmp_path, capsys):
    cfg = tmp_path / "empty.yaml"
    cfg.write_text(text)
    assert main(["train", "--out", str(tmp_path / "out"), "--config", str(cfg)]) == 2
    assert "is empty; write the keys to set" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
