"""No code from a model folder ever runs and no pickle is ever loaded, whatever stdin answers transformers' prompt.

Each folder below names a Python file (``auto_map``) whose import would create a marker file; every vlfuse loader
must refuse it, naming the file and the key, before transformers sees it, and the marker must never exist.
"""

from __future__ import annotations

import io
import json
import pathlib
import pickle

import pytest

from tests.conftest import TINY_LLAMA, tiny_vlm
from tests.parity.test_llava import _save_tiny_llava
from vlfuse import VLM
from vlfuse.data.tokenizer import TokenizerConfig, load_tokenizer
from vlfuse.encoders.hf_vision import HFVisionConfig, HFVisionEncoder
from vlfuse.hub import check_folder
from vlfuse.llm import LLMConfig, build_llm


@pytest.fixture
def marker(tmp_path, monkeypatch):
    """The file the folder's code would create; stdin says "y" to any "run the custom code?" prompt."""
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n" * 10))
    path = tmp_path / "code_ran"
    yield path
    assert not path.exists(), "code from the model folder ran"


def _plant(folder: pathlib.Path, marker: pathlib.Path, file: str, auto_map: dict, module: str) -> None:
    """Add ``auto_map`` to ``folder/file`` and write ``module.py``, whose import creates ``marker``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    path = folder / file
    data = json.loads(path.read_text()) if path.is_file() else {}
    data["auto_map"] = auto_map
    path.write_text(json.dumps(data))


def _evil_llm(folder: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    """A causal-LM folder of an unknown model_type whose classes live in its own modeling_evil.py."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "evil"}))
    _plant(folder, marker, "config.json", {"AutoConfig": "modeling_evil.EvilConfig",
                                           "AutoModelForCausalLM": "modeling_evil.EvilModel"}, "modeling_evil")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def _refused(call, file: str, code: str) -> None:
    with pytest.raises(ValueError, match="never runs code from a model folder") as e:
        call()
    assert file in str(e.value) and "'auto_map'" in str(e.value) and code in str(e.value)


def test_from_transformers_refuses_a_folder_asking_for_remote_code(tmp_path, marker):
    _save_tiny_llava(tmp_path / "llava")
    _plant(tmp_path / "llava", marker, "config.json", {"AutoConfig": "modeling_evil.EvilConfig",
                                                      "AutoModel": "modeling_evil.EvilModel"}, "modeling_evil")
    _refused(lambda: VLM.from_transformers(str(tmp_path / "llava")), "config.json", "modeling_evil.py")


def test_from_pretrained_refuses_a_tokenizer_asking_for_remote_code(tmp_path, marker):
    tiny_vlm().save_pretrained(str(tmp_path / "m"))
    _plant(tmp_path / "m", marker, "tokenizer_config.json", {"AutoTokenizer": ["tokenization_evil.Tok", None]},
           "tokenization_evil")
    _refused(lambda: VLM.from_pretrained(str(tmp_path / "m")), "tokenizer_config.json", "tokenization_evil.py")


@pytest.mark.parametrize("file", ["preprocessor_config.json", "processor_config.json"])
def test_a_processor_asking_for_remote_code_is_refused_too(tmp_path, marker, file):
    _save_tiny_llava(tmp_path / "llava")
    _plant(tmp_path / "llava", marker, file, {"AutoProcessor": "repo--processing_evil.Proc"}, "processing_evil")
    _refused(lambda: VLM.from_transformers(str(tmp_path / "llava")), file, "processing_evil.py")


def test_llm_path_and_tokenizer_path_and_encoder_path_refuse_remote_code(tmp_path, marker):
    folder = _evil_llm(tmp_path / "llm", marker)
    _refused(lambda: build_llm(LLMConfig(path=str(folder))), "config.json", "modeling_evil.py")
    _refused(lambda: HFVisionEncoder(HFVisionConfig(path=str(folder))), "config.json", "modeling_evil.py")
    tok = tmp_path / "tok"
    load_tokenizer(TokenizerConfig(), ["red"]).save_pretrained(str(tok))
    _plant(tok, marker, "tokenizer_config.json", {"AutoTokenizer": ["tokenization_evil.Tok", None]},
           "tokenization_evil")
    _refused(lambda: load_tokenizer(TokenizerConfig(path=str(tok))), "tokenizer_config.json", "tokenization_evil.py")


def test_trust_remote_code_false_is_a_second_guard(tmp_path, marker, monkeypatch):
    """With the folder check switched off, transformers itself refuses: vlfuse passes trust_remote_code=False."""
    folder = _evil_llm(tmp_path / "llm", marker)
    monkeypatch.setattr("vlfuse.llm.check_folder", lambda *a, **k: None)
    with pytest.raises(ValueError, match="custom code"):
        build_llm(LLMConfig(path=str(folder)))


def test_an_auto_map_nested_in_a_sub_config_is_found(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"auto_map": {"AutoModel": "m_x.X"}}}))
    with pytest.raises(ValueError, match=r"'text_config.auto_map' -> m_x.py"):
        check_folder(tmp_path)


class _WritesMarker:
    """Unpickling this object creates the marker file."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return pathlib.Path.write_text, (self.path, "ran")


def test_pickled_weights_are_refused_unread(tmp_path, marker):
    folder = tmp_path / "llm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY_LLAMA))
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_WritesMarker(marker)))
    with pytest.raises(ValueError, match=r"pytorch_model\.bin.*convert to safetensors"):
        build_llm(LLMConfig(path=str(folder)))
    _save_tiny_llava(tmp_path / "llava")
    (tmp_path / "llava" / "model.safetensors").unlink()
    (tmp_path / "llava" / "pytorch_model.bin").write_bytes(pickle.dumps(_WritesMarker(marker)))
    with pytest.raises(ValueError, match="convert to safetensors"):
        VLM.from_transformers(str(tmp_path / "llava"))


def test_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"llm\.path .* is not a folder.*nothing is downloaded"):
        build_llm(LLMConfig(path=str(tmp_path / "nowhere")))
