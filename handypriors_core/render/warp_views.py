"""Zero-copy warp views of torch tensors, shared by the renderer's warp launches (:mod:`.bridge`,
:mod:`.nearest_depth`)."""

from __future__ import annotations

import torch
import warp as wp

__all__ = ["as_warp", "warp_device_name"]


def warp_device_name(t: torch.Tensor) -> str:
    """Warp's name of the device ``t`` lives on: ``"cpu"`` or ``"cuda:<index>"``."""
    return "cpu" if t.device.type == "cpu" else f"cuda:{t.device.index if t.device.index is not None else 0}"


def as_warp(t: torch.Tensor, dtype, shape=None) -> wp.array:
    """Zero-copy warp view of a contiguous tensor (kept alive by the caller) as ``dtype``, ``shape`` (default:
    the tensor's)."""
    assert t.is_contiguous()
    if shape is None:
        shape = tuple(t.shape)
    return wp.array(ptr=t.data_ptr(), dtype=dtype, shape=shape, device=warp_device_name(t), copy=False)
