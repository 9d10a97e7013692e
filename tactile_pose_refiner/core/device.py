"""The compute device a refinement runs on (a parameter everywhere; CUDA when present)."""

from __future__ import annotations

import torch


def resolve_device(requested: str) -> str:
    """'cpu' | 'cuda' | 'auto' -> a torch device string; 'cuda' without CUDA is an error."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for but torch sees no CUDA device")
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or auto, got '{requested}'")
    return requested
