"""Seeds: where every random number the core draws comes from.

The core owns all randomness that must be identical across backends: initial
weights, the shuffling order of ``fit`` and, in parity mode, dropout masks.
All of it is derived from one global seed (:func:`set_random_seed`) through
NumPy's ``SeedSequence``, so the same seed gives the same run on every backend.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

_root = np.random.SeedSequence()
_generator = np.random.default_rng(_root)


def set_random_seed(seed: int) -> None:
    """Seed everything polykeras draws: initializers, shuffling, dropout.

    Like ``keras.utils.set_random_seed`` this also seeds Python's and NumPy's
    global generators, so user code that draws from them is reproducible too.
    """
    import random as _pyrandom

    global _generator
    seed = int(seed)
    _generator = np.random.default_rng(np.random.SeedSequence(seed))
    _pyrandom.seed(seed)
    np.random.seed(seed % 2**32)


def generator() -> np.random.Generator:
    """The global generator (initializers draw from it in build order)."""
    return _generator


def next_seed() -> int:
    """A fresh 32-bit seed from the global generator (e.g. one per ``fit``)."""
    return int(_generator.integers(0, 2**31 - 1))


def shuffle_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The permutation ``fit`` uses for ``epoch``: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def step_seed(seed: int, step: int) -> int:
    """The seed of one training step, handed to the backend."""
    return (seed * 1_000_003 + step) % 2**62


class Normal(NamedTuple):
    """Gaussian noise asked for where a dropout rate would be: the "mask" is
    ``mean + stddev * N(0, 1)`` per element, as Keras's ``random.normal(mean=,
    stddev=)``. ``GaussianNoise`` adds ``Normal(0, stddev)``; ``GaussianDropout``
    multiplies by ``Normal(1, sqrt(rate / (1 - rate)))``."""

    mean: float
    stddev: float


def dropout_mask(step_seed: int, layer_index: int, stream: int, shape: tuple, rate, dtype) -> np.ndarray:
    """The parity-mode dropout mask: 0 where a unit is dropped, ``1/(1-rate)``
    where it is kept (Keras's inverted dropout); for ``rate`` a :class:`Normal`,
    that Gaussian noise instead (drawn in float64, then cast).

    It depends only on the step seed, the layer's position in the spec and a
    per-layer ``stream`` (an LSTM draws an input and a recurrent mask), so
    every backend that uses it drops exactly the same units.
    """
    rng = np.random.default_rng([step_seed, layer_index, stream])
    if isinstance(rate, Normal):
        return (rate.mean + rate.stddev * rng.standard_normal(shape)).astype(dtype)
    keep = rng.random(shape) >= rate
    return keep.astype(dtype) * np.asarray(1.0 / (1.0 - rate), dtype=dtype)
