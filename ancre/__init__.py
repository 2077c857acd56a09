"""ancre: pretraining Llama-style models whose residual wiring is learned."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``ancre.load_pretrained``, imported on first use so ``import ancre`` stays light.

    Tools that read run folders (``ancre.snapshot``) must work without torch.
    """
    if name == "load_pretrained":
        from ancre.pretrained import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'ancre' has no attribute {name!r}")
