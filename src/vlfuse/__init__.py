"""vlfuse: every way of fusing vision and language behind one API.

``VLM`` is ``vision encoder -> connector -> injection -> LLM``; each slot is a registered design picked by a
``kind`` string in a ``VLMConfig``. Other model kinds (``vlfuse.kinds``: the CLIP / SigLIP ``DualEncoder``) share
its protocol.
"""

from vlfuse.model import VLM, VLMConfig, VLMOutput
from vlfuse.registry import CONNECTORS, ENCODERS, INJECTIONS

__version__ = "0.1.0"


def list_designs() -> dict[str, list[str]]:
    """Registered names per slot, and the model kinds (``vlm``, ``dual_encoder``)."""
    from vlfuse.kinds import model_names

    return {"encoders": ENCODERS.names(), "connectors": CONNECTORS.names(), "injections": INJECTIONS.names(),
            "models": model_names()}


__all__ = ["VLM", "VLMConfig", "VLMOutput", "list_designs"]
