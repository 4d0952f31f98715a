"""Per-component training policy, decided once by the recipe: ``train``, ``freeze`` or ``lora`` (via ``peft``).

LoRA (Hu et al., 2021, arXiv:2106.09685) adapters are injected in place with ``peft.inject_adapter_in_model``
so the module tree (and the state-dict keys of everything else) stays as it was; ``merge_lora`` folds them back
into plain ``nn.Linear`` weights for export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

Policy = Literal["train", "freeze", "lora"]
COMPONENTS = ("encoder", "connector", "injector", "llm")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # Linear names inside the component


def apply_policy(model: nn.Module, policies: dict[str, Policy], lora: LoraSettings | None = None) -> None:
    """Set ``requires_grad`` per component (``model.components``); inject LoRA where the policy says ``lora``.

    A policy may name components of other model kinds as ``train`` (the default); freezing or LoRA on a component
    this model lacks raises."""
    components = getattr(model, "components", COMPONENTS)
    missing = sorted(k for k, v in policies.items() if k not in components and v != "train")
    if missing:
        raise ValueError(f"the policy sets {missing} but a {type(model).__name__} has no such component; its "
                         f"components are: {', '.join(components)}")
    for name in components:
        policy = policies.get(name, "train")
        module = getattr(model, name)
        if policy == "lora":
            _inject_lora(module, lora or LoraSettings(), name)
        else:
            for p in module.parameters():
                p.requires_grad_(policy == "train")


def _inject_lora(module: nn.Module, lora: LoraSettings, name: str) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    targets = {n.rsplit(".", 1)[-1] for n, m in module.named_modules() if isinstance(m, nn.Linear)}
    wanted = [t for t in lora.target_modules if t in targets]
    if not wanted:
        raise ValueError(f"lora on {name}: none of {list(lora.target_modules)} is a Linear in it; "
                         f"its Linear layers are named {sorted(targets)}")
    for p in module.parameters():
        p.requires_grad_(False)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=wanted)
    inject_adapter_in_model(config, module)  # adds trainable lora_A / lora_B beside each target


def has_lora(model: nn.Module) -> bool:
    return any(hasattr(m, "lora_A") for m in model.modules())


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base layer and put the base layer back in its place."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if hasattr(child, "lora_A") and hasattr(child, "base_layer"):
                child.merge()
                setattr(parent, child_name, child.base_layer)
    return model


def count_parameters(model: nn.Module) -> dict[str, dict[str, int]]:
    """``{component: {"total": n, "trainable": m}}`` for each slot."""
    out = {}
    for name in getattr(model, "components", COMPONENTS):
        params = list(getattr(model, name).parameters())
        out[name] = {"total": sum(p.numel() for p in params),
                     "trainable": sum(p.numel() for p in params if p.requires_grad)}
    return out
