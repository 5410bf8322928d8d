"""float32 and float64 programs, and what JAX's x64 switch forces on us.

JAX has no per-array or per-function choice of 64-bit floats. One config flag,
``jax_enable_x64``, decides for the whole *trace*: with it off, every float64
value -- a NumPy input, ``jnp.asarray(x, jnp.float64)``, a ``device_put`` --
is silently truncated to float32 when it enters JAX. The flag can be set
process-wide (``jax.config.update``, the ``JAX_ENABLE_X64`` variable) or
scoped with the thread-local context manager ``jax.enable_x64(bool)``
(JAX 0.10). The flag is part of every jitted function's cache key, so a
function traced inside the scope and then called outside it is silently
*retraced* in 32 bits.

This plugin therefore never touches the process-wide setting. Each program
has a :class:`Precision` and enters its scope around everything that creates
JAX arrays or calls its jitted functions: weight transfer, every step,
results. A float64 program runs with x64 on, a float32 program with x64
*off* -- so a float32 program stays float32 (and keeps one compilation) even
when the user's process has x64 enabled globally.

What leaks, precisely: nothing of the config -- the scope is thread-local and
restored on exit. Arrays are only handed out as NumPy copies. Two things a
user can still observe: (1) JAX compiles and caches each program's functions
under the x64 key it was traced with (more cache entries, no wrong results);
(2) code that runs *inside* our scope on the same thread -- there is none
during a step, since a step only calls our jitted function.

Parity mode additionally scopes ``jax.default_matmul_precision("highest")``:
on GPUs and TPUs XLA would otherwise run float32 matrix products in TF32 or
bfloat16 passes, which is fast but not comparable with the NumPy reference.
On CPU it changes nothing.
"""

from __future__ import annotations

import contextlib

import numpy as np


class Precision:
    """The dtype of one program and the JAX configuration it must run under."""

    def __init__(self, dtype: str, parity: bool = False) -> None:
        if dtype not in ("float32", "float64"):
            raise ValueError(f"the jax backend supports float32 and float64, not {dtype!r}")
        self.dtype = np.dtype(dtype)
        self.x64 = dtype == "float64"
        self.parity = parity

    def scope(self) -> contextlib.AbstractContextManager:
        """The context every JAX call of the program runs in.

        Entering ``jax.enable_x64`` costs about a microsecond, a few percent of a
        small model's whole step, so it is skipped when the thread is already in
        the right mode (a float32 program in a default process).
        """
        import jax

        if self.parity:
            return self._parity_scope()
        if bool(jax.config.jax_enable_x64) == self.x64:
            return contextlib.nullcontext()
        return jax.enable_x64(self.x64)

    @contextlib.contextmanager
    def _parity_scope(self):
        import jax

        with jax.enable_x64(self.x64), jax.default_matmul_precision("highest"):
            yield
