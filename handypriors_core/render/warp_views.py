"""Zero-copy warp views of torch tensors, shared by the renderer's warp launches (:mod:`.bridge`,
:mod:`.nearest_depth`), and :class:`KeptLaunch`, the replay of a recorded CPU launch (the renderer's kept z-buffer
plan, the sparse depth modality's passes)."""

from __future__ import annotations

import ctypes

import torch
import warp as wp

__all__ = ["KeptLaunch", "as_warp", "warp_device_name"]


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


class KeptLaunch:
    """A CPU launch recorded once (``wp.launch(..., record_cmd=True)``) and replayed by calling its compiled kernel
    with a kept argument structure: the same kernel, arguments and bounds as ``Launch.launch()`` without the ~15
    ctypes field copies and type look-ups that warp's replay makes per call (about 7 us of a few-microsecond
    kernel). Launches warp would not replay that way (other devices, thread blocks, adjoints, a missing internal)
    go through ``Launch.launch()``.

    Args: launch: the recorded ``warp.Launch``. ``set_dim`` / ``set_param_at_index`` as the launch's own.
    """

    def __init__(self, launch) -> None:
        self.launch_command = launch
        kernel = launch.kernel
        self._direct = (launch.device.is_cpu and getattr(launch, "block_dim", 1) <= 1 and not launch.adjoint
                        and hasattr(launch.hooks, "forward"))
        self._fields = [a.label for a in kernel.adj.args]
        self._args = None  # the argument structure (built on the first launch, kept until a parameter's type changes)
        self._call: tuple = ()

    def _build(self) -> None:
        params = self.launch_command.params
        fields = [(name, type(value)) for name, value in zip(self._fields, params[1:len(self._fields) + 1])]
        args = type("ArgsStruct", (ctypes.Structure,), {"_fields_": fields})()
        for name, value in zip(self._fields, params[1:]):
            setattr(args, name, value)
        self._args = args
        self._types = [t for _, t in fields]
        self._call = (self.launch_command.hooks.forward, ctypes.byref(params[0]), ctypes.byref(args))

    def set_dim(self, dim) -> None:
        """The launch's dimensions (``Launch.set_dim``)."""
        self.launch_command.set_dim(dim)
        if self._args is not None:  # new bounds object
            self._call = (self._call[0], ctypes.byref(self.launch_command.params[0]), self._call[2])

    def set_param_at_index(self, index: int, value) -> None:
        """Argument ``index`` of the kernel (``Launch.set_param_at_index``)."""
        self.launch_command.set_param_at_index(index, value)
        if self._args is not None:
            carg = self.launch_command.params[index + 1]
            if type(carg) is self._types[index]:
                setattr(self._args, self._fields[index], carg)
            else:
                self._args = None

    def launch(self) -> None:
        """Run the kernel once over the current arguments."""
        if not self._direct:
            self.launch_command.launch()
            return
        if self._args is None:
            self._build()
        forward, bounds, args = self._call
        forward(bounds, args)
