"""Which device a model runs on, and what its CPU can do: one home for embed, rerank and finetune."""

from __future__ import annotations


def pick_device(preference: str) -> str:
    """'auto' → CUDA, then Apple MPS, then CPU; any other value is used as given."""
    if preference != "auto":
        return preference
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matmuls (AVX512-BF16 or AMX), where bf16 pays off."""
    try:
        import torch

        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - an odd torch build: assume not
        return False
