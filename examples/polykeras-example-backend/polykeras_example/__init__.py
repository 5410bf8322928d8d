"""polykeras-example-backend: a small third-party backend for polykeras.

The entry point ``example = "polykeras_example"`` (``pyproject.toml``) names
this module. polykeras imports it whenever it looks for backends, so it only
declares the backend; :mod:`.backend` is imported through ``factory`` when the
backend is first used.

The backend is deliberately partial: for a layer kind outside ``layer_kinds``
the core refuses to compile the model, naming the kind and the backends that
have it, and the conformance suite reports such cases as *unsupported*.
"""

from __future__ import annotations

from polykeras.backends import BackendInfo
from polykeras.hookspecs import hookimpl

#: The layer kinds (Keras class names, as in ``LayerSpec.kind``) this backend implements.
LAYER_KINDS = frozenset({"Dense", "Activation", "Dropout", "Flatten"})


def _numpy_version() -> str:
    import numpy

    return numpy.__version__


@hookimpl
def polykeras_backends() -> list[BackendInfo]:
    """Declare the ``example`` backend (called once per process by polykeras)."""
    return [BackendInfo(
        name="example",
        factory="polykeras_example.backend:ExampleBackend",  # "module:attr", imported on first use
        requires=("numpy",),  # checked with importlib.util.find_spec, never imported here
        dtypes=("float32", "float64"),
        version=_numpy_version,
        summary="example third-party plugin: NumPy, Dense/Activation/Dropout/Flatten, SGD and Adam",
        layer_kinds=LAYER_KINDS,
        plugin="polykeras_example",
    )]
