"""polykeras: the Keras API, on any backend -- and proof that it runs the same.

``import polykeras as keras`` and write Keras code. The backend that runs it
is chosen by ``POLYKERAS_BACKEND`` (default ``numpy``, the reference), or per
model with ``compile(backend=...)``. Importing polykeras imports only NumPy and
pluggy; a backend's framework is imported when that backend is first used.
"""

__version__ = "0.1.0"

from polykeras import (activations, backend, callbacks, distribution, initializers, layers, losses, metrics, models,
                       ops, optimizers, preprocessing, regularizers, saving, utils)
from polykeras.backends import get_backend, set_backend
from polykeras.layers import Input
from polykeras.models import Model, Sequential
from polykeras.random import set_random_seed


def __getattr__(name):
    # datasets are imported on first use (they are not needed to build models)
    if name == "datasets":
        import importlib

        return importlib.import_module("polykeras.datasets")
    raise AttributeError(f"module 'polykeras' has no attribute {name!r}")


__all__ = ["Input", "Model", "Sequential", "activations", "backend", "callbacks", "datasets", "get_backend",
           "initializers", "layers", "losses", "metrics", "models", "ops", "optimizers", "preprocessing", "regularizers",
           "saving", "set_backend", "set_random_seed", "utils", "__version__"]
