"""The JAX backend: which device, which dtype; ``compile`` makes a
:class:`~polykeras_jax.program.JaxProgram`. (This module imports JAX; the
plugin's ``__init__`` names it only as a ``"module:attr"`` string.)"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from polykeras.program import Backend
from polykeras.spec import ModelSpec, TrainingSpec
from polykeras_jax import LAYER_KINDS, losses, metrics, optimizers
from polykeras_jax.precision import Precision
from polykeras_jax.program import JaxProgram


class JaxBackend(Backend):
    """JAX on one device: ``"cpu"``, ``"gpu"`` or ``"tpu"``, optionally ``":index"``."""

    name = "jax"
    graph_features = frozenset({"multiple_inputs", "multiple_outputs", "shared_layers", "masking",
                                "inference_nodes", "added_losses"})
    training_features = frozenset({"sample_weight", "per_output_sample_weight", "optimizer_state",
                                   "metric_statistics", "metric_weight"})
    layer_kinds = LAYER_KINDS
    optimizer_kinds = frozenset(optimizers.OPTIMIZERS)
    loss_kinds = frozenset(losses.LOSSES) | {"function"}
    metric_kinds = frozenset(metrics.METRICS)

    def __init__(self, device: str = "cpu", dtype: str = "float32") -> None:
        Precision(dtype)  # refuses anything but float32/float64, with the reason
        super().__init__(device, dtype)
        platform, _, index = device.partition(":")
        try:
            devices = jax.local_devices(backend=platform)  # this process's (all of them with one process)
        except RuntimeError as exc:
            raise ValueError(f"the jax backend has no device {device!r} here: {exc}") from None
        if int(index or 0) >= len(devices):
            raise ValueError(f"the jax backend has {len(devices)} {platform} device(s); {device!r} does not exist")
        self.jax_device = devices[int(index or 0)]

    def compile(self, spec: ModelSpec, weights: Sequence[np.ndarray], training: TrainingSpec | None = None,
                *, parity: bool = False) -> JaxProgram:
        return JaxProgram(self, spec, weights, training, parity)

    # -- data parallelism (polykeras.distribution; see polykeras_jax.distributed) ----------------
    def list_devices(self, device_type: str | None = None) -> list[str]:
        from polykeras_jax.distributed import device_names

        return device_names(device_type or self.jax_device.platform)

    def distribute(self, program: JaxProgram, value) -> JaxProgram:
        from polykeras_jax.distributed import distribute

        return distribute(program, value)

    def replica_launch(self, replicas: int) -> dict | None:
        """How to run ``replicas`` replicas on this machine (the conformance suite's L4 asks): one
        process holding that many devices -- on CPU, host devices that XLA makes from
        ``XLA_FLAGS`` (set before JAX starts); on accelerators, the ones present, else ``None``."""
        platform = self.jax_device.platform
        if platform == "cpu":
            return {"processes": 1, "env": {"JAX_PLATFORMS": "cpu",
                                            "XLA_FLAGS": f"--xla_force_host_platform_device_count={replicas}"}}
        return {"processes": 1, "env": {}} if len(self.list_devices(platform)) >= replicas else None

    @staticmethod
    def initialize_distributed(cluster, device: str | None = None) -> None:
        """Called on the class: creating a JaxBackend would start JAX, which must come after."""
        from polykeras_jax.distributed import initialize

        initialize(cluster)

    def describe(self) -> str:
        return f"jax on {self.jax_device} ({self.dtype})"
