"""Reading local model folders safely: no code from the folder ever runs, no pickle is ever loaded.

``transformers`` runs Python files shipped in a model folder when its config names them (``auto_map``) and the
caller trusts remote code; vlfuse never does. Every vlfuse loader calls ``check_folder`` before any
``from_pretrained``, and passes ``NO_REMOTE_CODE`` (``trust_remote_code=False``) to each of them as a second guard.
Weights are read from safetensors only (``.bin`` / ``.pt`` files are pickles, refused).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NO_REMOTE_CODE: dict[str, Any] = {"trust_remote_code": False}  # for every transformers from_pretrained call
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")  # torch.save / pickle weight files


def _remote_code_key(node: Any, path: str = "") -> tuple[str, Any] | None:
    """The first ``auto_map`` key (dotted path) anywhere in a parsed JSON config, with its value."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else key
            if key == "auto_map":
                return where, value
            found = _remote_code_key(value, where)
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _remote_code_key(value, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _code_files(auto_map: Any) -> list[str]:
    """The ``.py`` files an ``auto_map`` names (``"modeling_x.Cls"``, ``"repo--modeling_x.Cls"`` -> modeling_x.py)."""
    refs = auto_map.values() if isinstance(auto_map, dict) else [auto_map]
    names: list[str] = []
    for ref in refs:
        for item in ref if isinstance(ref, list) else [ref]:
            if isinstance(item, str) and "." in item:
                name = item.split("--")[-1].rsplit(".", 1)[0].replace(".", "/") + ".py"
                if name not in names:
                    names.append(name)
    return names


def check_folder(path: str | Path, what: str = "model folder", weights: bool = False) -> Path:
    """Refuse a folder that asks to run its own code, or (``weights=True``) whose weights are pickles.

    Reads every ``*config.json`` (``config.json``, ``tokenizer_config.json``, ``preprocessor_config.json``,
    ``processor_config.json``, ...) and raises if any holds an ``auto_map`` key; nothing is imported.

    Args:
        path: a local folder.
        what: how error messages name the folder (e.g. ``"llm.path"``).
        weights: also require ``*.safetensors`` weights (a folder with only ``.bin`` / ``.pt`` files is refused).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: the folder does not exist, a config is not JSON, asks for remote code, or has no safetensors.

    Example:
        >>> check_folder("checkpoints/llava", weights=True)
        PosixPath('checkpoints/llava')
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{what} {str(path)!r} is not a folder; give a local folder a model was saved to "
                         "(vlfuse loads local folders only, nothing is downloaded)")
    for file in sorted(folder.glob("*config.json")):
        try:
            data = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{str(file)!r} is not valid JSON ({e}); fix or re-save the {what}") from None
        found = _remote_code_key(data)
        if found is not None:
            key, value = found
            files = ", ".join(_code_files(value)) or "Python files"
            raise ValueError(
                f"{str(file)!r} asks to run code from the model folder (key {key!r} -> {files}); vlfuse never runs "
                f"code from a model folder: use a model whose type transformers ships, or remove {key!r} if the "
                "folder's model is one of them"
            )
    if weights and not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ValueError(
                f"{what} {str(path)!r} holds only pickled weights ({', '.join(pickles[:3])}); vlfuse never loads "
                "pickles: convert to safetensors (in a trusted environment: load the model and "
                "`save_pretrained(folder, safe_serialization=True)`)"
            )
        raise ValueError(f"{what} {str(path)!r} has no *.safetensors weights; save the model there with "
                         "save_pretrained (safetensors)")
    return folder
