"""Fast checkpoint loading: build with parameters on the meta device, then assign the safetensors tensors.

A model built for real initialises every weight at random only to overwrite it, and loading then holds a second
full copy; here parameters are created on ``meta`` (no memory, no init), the checkpoint is read with ``safe_open``
and each tensor is cast to the target dtype / device and assigned (``load_state_dict(assign=True)``), so peak
memory is about one copy of the weights. Buffers (rotary ``inv_freq``, position ids, fixed sin-cos tables) are not
put on meta: their constructors compute them as usual, so none is left to recompute.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import safe_open
from torch import nn

M = TypeVar("M", bound=nn.Module)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (the names ``LLMConfig.dtype`` takes)."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"dtype {dtype} is not supported; choices: {list(DTYPES)}")


def resolve_dtype(dtype: torch.dtype | str | None, saved: str | None = None) -> torch.dtype | None:
    """``"auto"`` -> the checkpoint's saved dtype name (``saved``; float32 when it has none); names -> dtypes."""
    if dtype is None or isinstance(dtype, torch.dtype):
        if dtype is not None:
            dtype_name(dtype)  # validates
        return dtype
    name = (saved or "float32") if dtype == "auto" else dtype
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not supported; choices: 'auto', {', '.join(map(repr, DTYPES))}")
    return DTYPES[name]


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Every parameter registered inside goes to ``meta`` at once; buffers and plain tensors stay where made."""
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            cls = type(param)
            module._parameters[name] = cls(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]


def build_empty(build: Callable[[], M], dtype: torch.dtype | None = None) -> M:
    """``build()`` with its parameters on ``meta``, under default dtype ``dtype`` (buffers come out real)."""
    previous = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        with _parameters_on_meta():
            return build()
    finally:
        torch.set_default_dtype(previous)


def read_safetensors(directory: str | Path, files: list[str] | None = None) -> dict[str, torch.Tensor]:
    """All tensors of a (possibly sharded) safetensors checkpoint, read with ``safe_open`` (never unpickled)."""
    directory = Path(directory)
    if files is None:
        index = directory / "model.safetensors.index.json"
        files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file()
                 else ["model.safetensors"])
    out: dict[str, torch.Tensor] = {}
    for name in files:
        if not (directory / name).is_file():
            raise ValueError(f"{str(directory)!r} has no {name}; save the model there with safetensors")
        with safe_open(str(directory / name), framework="pt") as f:
            for key in f.keys():  # safe_open has no __iter__
                out[key] = f.get_tensor(key)
    return out


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return (model.get_submodule(path) if path else model), leaf


def _cast_own_buffers(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast the floating buffers of vlfuse's (and torch's) modules to ``dtype``, as ``Module.to`` would.

    ``transformers`` modules are skipped: their modelling code picks its buffers' dtypes (rotary ``inv_freq``
    stays float32 under a bf16 model, as in transformers' own loading).
    """
    for module in model.modules():
        if type(module).__module__.startswith("transformers."):
            continue
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None and buffer.is_floating_point():
                module._buffers[name] = buffer.to(dtype)  # e.g. the ViT's fixed sin-cos table


def load_weights(model: M, state: dict[str, torch.Tensor], dtype: torch.dtype | None = None,
                 device: str | torch.device = "cpu") -> M:
    """Assign ``state`` into a model from ``build_empty`` (strict), cast and moved; nothing stays on ``meta``.

    Args:
        model: built by ``build_empty``.
        state: the weights under the model's own keys; emptied as it is consumed.
        dtype: floating parameters' (and vlfuse modules' floating buffers') dtype; None: each one's as built.
        device: where the weights go (buffers are moved there too).

    Raises:
        ValueError: a weight is missing, unexpected, or of another shape than the model's.
    """
    expected = model.state_dict(keep_vars=True)  # the model's own keys (wrappers may rename them with hooks)
    by_tensor: dict[int, list[str]] = {}
    for key, tensor in expected.items():
        by_tensor.setdefault(id(tensor), []).append(key)
    unexpected = [k for k in state if k not in expected]
    for key in list(state):
        ref = expected.get(key)
        if ref is None:
            continue
        if tuple(state[key].shape) != tuple(ref.shape):
            raise ValueError(f"weight {key!r} has shape {tuple(state[key].shape)} but the model's is "
                             f"{tuple(ref.shape)}; is the config the one these weights were saved with?")
        cast = dtype if (dtype is not None and state[key].is_floating_point()) else ref.dtype
        state[key] = state[key].to(device=device, dtype=cast)  # one tensor at a time: peak ~ one copy
    missing = []
    for keys in by_tensor.values():
        loaded = [k for k in keys if k in state]
        if not loaded:
            missing += keys
            continue
        for key in keys:  # a tied weight saved once (e.g. lm_head = embeddings): every key gets the loaded one
            state.setdefault(key, state[loaded[0]])
    if missing or unexpected:
        raise ValueError(f"weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}; is the config the "
                         "one these weights were saved with?")
    shared: dict[int, list[str]] = {}  # attribute paths of each parameter, to re-tie after assign
    for name, param in model.named_parameters(remove_duplicate=False):
        shared.setdefault(id(param), []).append(name)
    model.load_state_dict(state, strict=False, assign=True)
    for names in shared.values():  # assign=True gave each name its own Parameter: share tied ones again
        first = _owner(model, names[0])
        for name in names[1:]:
            module, leaf = _owner(model, name)
            setattr(module, leaf, getattr(*first))
    state.clear()
    if dtype is not None:
        _cast_own_buffers(model, dtype)
    model.to(device)  # buffers (parameters are already there)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    if left:
        raise ValueError(f"weights do not fit: {left[:5]} were not in the checkpoint; is the config the one these "
                         "weights were saved with?")
    return model
