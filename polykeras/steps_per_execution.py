"""``compile(steps_per_execution=...)``: how many batches ``fit`` hands a backend at once.

An integer ``N`` is Keras's setting: N batches stacked, one ``Program.train_steps`` call (which a
backend may run as one compiled loop, e.g. jax's ``lax.scan``). ``"auto"`` lets the trainer
choose N for this model, backend and batch size: :class:`AutoStepsPerExecution` times the
first steps of the first epoch, one at a time and in chunks of a probe size P, interleaved
(1, P, 1, P), and from the two per-step times estimates the per-step *host overhead* ``h``
(what a chunk saves per step: dispatch, slicing, the trainer's Python) and the per-step
*compute* ``c``:

    t1 = h + c,    tP = h / P + c    =>    h = (t1 - tP) * P / (P - 1),   c = t1 - h.

It then picks the smallest power of two ``N >= P`` whose host share ``(h / N) / (h / N + c)`` is
under :data:`HOST_SHARE` (2%), within :func:`largest_size`. Where chunks do not measurably pay
(``tP`` not at least :data:`MIN_GAIN` below ``t1``: a backend whose ``train_steps`` is a plain
loop, or a model whose compute dwarfs the host work) it keeps N = 1. Each new chunk length may
cost a compilation (jax compiles one ``lax.scan`` per length), so in a fit too short to repay
it the chunks are not even timed, and N stays at P unless the rest of the fit repays compiling
N (see :class:`AutoStepsPerExecution`). The trajectory never depends on the choice: data order
and step seeds are the trainer's, per step.

Chunks never run where they would change what callbacks see: with a learning-rate schedule, a
callback other than the progress bar that has per-batch train hooks (so such a callback still
sees every batch, with that batch's weights), a generator/dataset, or several processes (whose
timings, and so choices, could differ) ``"auto"`` is 1. An epoch's last batches that do not
fill a chunk run one at a time, so a backend compiles at most three chunk lengths (1, P, N).
"""

from __future__ import annotations

import time
from typing import Callable

AUTO = "auto"
HOST_SHARE = 0.02  # the host overhead "auto" aims to stay under, as a share of a step
MIN_GAIN = 0.03  # chunks must beat single steps by this much per step, or "auto" keeps 1
PROBE = 8  # the chunk length timed against single steps
GAIN_GUESS = 0.25  # before timing chunks: the share of a step they may save (jax cifar-cnn: 20%), to weigh compiling
MAX_SIZE = 64  # beyond this the host share is negligible on every backend measured
MAX_CHUNK_BYTES = 32 * 2 ** 20  # the stacked copy of one chunk's batches
WINDOW_SECONDS = 0.05  # a timed window runs this long, or an eighth of the epoch, whichever comes first
MIN_WINDOW_STEPS = 4

# the clock the tuner reads (tests replace it to inject timings)
clock: Callable[[], float] = time.perf_counter


def check(value) -> int | str:
    """``compile``'s ``steps_per_execution`` checked: a positive integer, or ``"auto"``."""
    if isinstance(value, str):
        if value == AUTO:
            return AUTO
        raise ValueError(f"steps_per_execution must be a positive integer (batches per execution) or 'auto' "
                         f"(chosen by timing the first steps), got {value!r}")
    try:
        valid = not isinstance(value, bool) and float(value).is_integer() and int(value) >= 1
    except (TypeError, ValueError, OverflowError):
        valid = False
    if not valid:
        raise ValueError(f"steps_per_execution must be a positive integer (batches per execution) or 'auto' "
                         f"(chosen by timing the first steps), got {value!r}")
    return int(value)


def window_steps(steps: int) -> int:
    """The most steps a timed window takes in an epoch of ``steps`` full batches: an eighth, so
    that the four windows and their lead-ins end within the first epoch where it is long enough."""
    return max(MIN_WINDOW_STEPS, steps // 8)


def largest_size(steps: int, batch_bytes: int) -> int:
    """The longest chunk ``"auto"`` may pick for an epoch of ``steps`` full batches of
    ``batch_bytes`` bytes each: at most :data:`MAX_SIZE`, a quarter of the epoch (the rest of an
    epoch that does not fill a chunk runs one step at a time) and :data:`MAX_CHUNK_BYTES`."""
    return max(1, min(MAX_SIZE, steps // 4, MAX_CHUNK_BYTES // max(1, batch_bytes)))


def split(single: float, chunked: float, probe: int) -> tuple[float, float]:
    """``(host, compute)`` seconds of a step, from the per-step times one at a time and in chunks of
    ``probe``."""
    host = max(0.0, (single - chunked) * probe / (probe - 1))
    return host, max(single - host, 1e-3 * single)  # the fit can make compute ~0 when the host is all of it


def choose(single: float, chunked: float, probe: int, largest: int) -> int:
    """The chunk length for per-step times ``single`` (one step per execution) and ``chunked``
    (``probe`` steps per execution), at most ``largest`` (see the module docstring)."""
    if not chunked < single * (1 - MIN_GAIN):
        return 1
    host, compute = split(single, chunked, probe)
    wanted = host * (1 - HOST_SHARE) / (HOST_SHARE * compute)
    size = probe
    while size < wanted and size * 2 <= largest:
        size *= 2
    return min(size, largest)


class AutoStepsPerExecution:
    """The chunk length of each execution of a ``fit`` with ``steps_per_execution="auto"``.

    The trainer asks :meth:`size` before each execution (``left``: full batches left in the
    epoch), reports each one with :meth:`executed` (``k`` steps ran; ``sync`` waits for the
    device, e.g. ``program.results``) and calls :meth:`epoch_begin` at each epoch start (a timed
    window never spans an epoch's end, its validation or callbacks). :attr:`chosen` is ``None``
    while measuring, then the length picked; :attr:`timings` the per-step seconds of each
    window, ``(size, seconds)``; :attr:`measured` whether the choice came from them (and so may
    be kept for a later ``fit``).

    ``steps_left`` (the steps the fit will run, when known) lets it weigh what a new chunk length
    costs to compile (estimated as the first execution's time, which on a fresh program includes
    compiling the single step): it times chunks only if the rest of the fit is long enough that
    saving :data:`GAIN_GUESS` of a step would pay for two compilations, and picks a length above
    the probe's only if the predicted saving over the rest of the fit pays for one.
    """

    def __init__(self, largest: int, max_window_steps: int = MIN_WINDOW_STEPS, steps_left: int | None = None,
                 probe: int = PROBE, window_seconds: float = WINDOW_SECONDS) -> None:
        self.largest, self.window_seconds, self.steps_left = largest, window_seconds, steps_left
        self.measured = False
        self.compile_seconds: float | None = None  # the first execution's time: the cost of a compilation
        self.max_window_steps = max(MIN_WINDOW_STEPS, max_window_steps)
        self.probe = min(probe, largest)
        self.plan = [1, self.probe, 1, self.probe]  # the windows still to time, interleaved against drift
        self.chosen: int | None = 1 if self.probe < 2 else None
        self.timings: list[tuple[int, float]] = []
        self._start: float | None = None  # when the current window's timing began (None: not yet)
        self._epoch_start: float | None = None
        self._steps = 0

    def size(self, left: int) -> int:
        """Steps of the next execution, at most ``left`` (when a chunk does not fit: 1)."""
        wanted = self.chosen if self.chosen is not None else self.plan[0]
        return wanted if wanted <= left else 1

    def epoch_begin(self) -> None:
        self._start = None
        if self.compile_seconds is None:
            self._epoch_start = clock()

    def executed(self, k: int, sync: Callable[[], object]) -> None:
        if self.steps_left is not None:
            self.steps_left -= k
        if self.chosen is not None:
            return
        if self.compile_seconds is None and self._epoch_start is not None:
            self.compile_seconds = clock() - self._epoch_start
        if k != self.plan[0]:  # an epoch's last steps: the window starts again
            self._start = None
            return
        if self._start is None:  # a lead-in execution (the first of a size compiles): not timed
            sync()
            self._start, self._steps = clock(), 0
            return
        self._steps += k
        elapsed = clock() - self._start
        if self._steps < MIN_WINDOW_STEPS or (elapsed < self.window_seconds and self._steps < self.max_window_steps):
            return
        sync()
        self.timings.append((k, (clock() - self._start) / self._steps))
        self._start = None
        self.plan.pop(0)
        single = min(t for s, t in self.timings if s == 1)
        if len(self.timings) == 1 and not self._pays(GAIN_GUESS * single, 2):
            self.chosen = 1  # too short a fit for chunks to repay their compilation
        elif not self.plan:
            chunked = min(t for s, t in self.timings if s != 1)
            self.chosen = choose(single, chunked, self.probe, self.largest)
            self.measured = True
            if self.chosen > self.probe:
                host, compute = split(single, chunked, self.probe)
                if not self._pays(chunked - (host / self.chosen + compute), 1):
                    self.chosen = self.probe  # already compiled

    def _pays(self, saving_per_step: float, compilations: int) -> bool:
        """Whether saving this much per step over the rest of the fit repays ``compilations``."""
        if self.steps_left is None or self.compile_seconds is None:
            return True
        return self.steps_left * saving_per_step >= compilations * self.compile_seconds
