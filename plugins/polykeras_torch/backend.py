"""The torch backend: a device and a dtype, and ``compile`` (spec -> program).

Options, read when the backend is created (never at import):

* ``POLYKERAS_TORCH_COMPILE=1`` runs the model's forward pass through
  ``torch.compile``. Off by default: on CPU the step is dominated by GEMMs,
  convolutions and fused RNN kernels that eager mode already calls directly,
  and compiling costs seconds to minutes per model and input shape (measure
  with ``benchmarks/torch_backend.py`` before turning it on).
* Threads: torch's own default (one per physical core) is kept; set
  ``torch.set_num_threads`` yourself to change it. The backend does not
  touch global torch settings.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from polykeras.backends import DeviceNotAvailableError
from polykeras.program import Backend
from polykeras.spec import ModelSpec, TrainingSpec

from . import available_devices, losses, metrics, optimizers
from .layers import LAYERS
from .program import TorchProgram

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class TorchBackend(Backend):
    name = "torch"
    graph_features = frozenset({"multiple_inputs", "multiple_outputs", "shared_layers", "masking",
                                "inference_nodes", "added_losses"})
    training_features = frozenset({"sample_weight", "per_output_sample_weight", "optimizer_state",
                                   "metric_statistics", "metric_weight"})
    layer_kinds = frozenset(LAYERS)
    optimizer_kinds = frozenset(optimizers.OPTIMIZERS)
    loss_kinds = frozenset(losses.LOSSES) | {"function"}
    metric_kinds = frozenset(metrics.METRICS)

    def __init__(self, device: str = "cpu", dtype: str = "float32"):
        super().__init__(device, dtype)
        if dtype not in DTYPES:
            raise ValueError(f"the torch backend supports dtypes {', '.join(DTYPES)}, not {dtype!r}")
        self.torch_device = _check_device(device)
        if self.torch_device.type == "mps" and dtype == "float64":
            raise ValueError("the torch backend cannot run float64 on 'mps' (Apple GPUs have no float64); "
                             "use dtype='float32' or device='cpu'")
        self.torch_dtype = DTYPES[dtype]
        self.compile_forward = os.environ.get("POLYKERAS_TORCH_COMPILE", "0").lower() in ("1", "true", "yes")

    def compile(self, spec: ModelSpec, weights: Sequence[np.ndarray], training: TrainingSpec | None = None,
                *, parity: bool = False) -> TorchProgram:
        return TorchProgram(self, spec, weights, training, parity=parity)

    # -- data parallelism (polykeras.distribution; see polykeras_torch.distributed) --------------
    def list_devices(self, device_type: str | None = None) -> list[str]:
        from .distributed import device_names

        return device_names(device_type or self.torch_device.type, available_devices())

    def distribute(self, program: TorchProgram, value) -> TorchProgram:
        from .distributed import distribute

        return distribute(program, value, available_devices())

    def replica_launch(self, replicas: int) -> dict | None:
        """How to run ``replicas`` replicas on this machine (the conformance suite's L4 asks): one
        process each, joined as torchrun joins them (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...);
        on CUDA one GPU each, so ``None`` when there are fewer GPUs."""
        enough = self.torch_device.type == "cpu" or len(self.list_devices(self.torch_device.type)) >= replicas
        return {"processes": replicas, "env": {}} if enough else None

    @staticmethod
    def initialize_distributed(cluster, device: str | None = None) -> None:
        """Called on the class (``device``: default the best one), before any backend exists."""
        from .distributed import initialize

        initialize(cluster, (device or available_devices()[0]).split(":")[0])

    def describe(self) -> str:
        return f"torch {torch.__version__} on {self.torch_device} ({self.dtype})"


def _check_device(device: str) -> torch.device:
    """``device`` as a ``torch.device``, or a :class:`DeviceNotAvailableError`
    naming the devices this machine has (the core checks the device *type*;
    this also catches a CUDA index that does not exist)."""
    available = available_devices()
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        parsed = None
    ok = parsed is not None and any(
        d.split(":")[0] == parsed.type and (parsed.index is None or d == f"{parsed.type}:{parsed.index}")
        or (parsed.type == d and parsed.index in (None, 0))
        for d in available
    )
    if not ok:
        raise DeviceNotAvailableError(
            f"backend 'torch' has no device {device!r} on this machine; available: {', '.join(available)}"
        )
    return parsed
