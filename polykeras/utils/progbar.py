"""``Progbar``: Keras's progress bar, in Keras's own format.

Keras users read training output by eye and by tool (log scrapers, CI logs),
so the text matches Keras 3's ``keras.utils.Progbar``::

    Epoch 1/5
    469/469 ━━━━━━━━━━━━━━━━━━━━ 3s 6ms/step - accuracy: 0.9012 - loss: 0.3451
    469/469 - 3s - 6ms/step - accuracy: 0.9012 - loss: 0.3451      (verbose=2)

Two display modes:

* **dynamic** (a terminal or a notebook): the line is redrawn in place with
  ``\\r`` at most every ``interval`` seconds, with an ETA while running and the
  elapsed time at the end; bold / green ANSI styling as in Keras.
* **static** (stdout is a file or a pipe): only the final line is printed, in
  plain text, so logs and CI files do not fill with partial lines. (Keras
  itself treats every POSIX process as dynamic and writes ``\\r`` redraws into
  files too; this is a deliberate improvement.)

Per-step cost matters: an update that does not redraw is a
clock read and a few attribute writes. :meth:`Progbar.redraw_due` lets a caller
ask *before* computing values whether they would be shown at all, so the
values (a device-to-host sync) are only fetched when they are.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Iterable

# The clock; a module global so tests can replace it with a fake one.
_now = time.monotonic


def is_dynamic_display(stream=None) -> bool:
    """Whether ``stream`` (default ``sys.stdout``) can redraw a line in place:
    a terminal, a Jupyter/IPython kernel or PyCharm's console."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # closed stream
        tty = False
    return tty or "ipykernel" in sys.modules or "PYCHARM_HOSTED" in os.environ


def print_msg(message: str, line_break: bool = True) -> None:
    """Write ``message`` to the *current* ``sys.stdout`` and flush (Keras's
    ``io_utils.print_msg``). Looked up at call time so capture works."""
    sys.stdout.write(message + "\n" if line_break else message)
    sys.stdout.flush()


def format_value(value: Any) -> str:
    """A metric value the way Keras prints it: 4 decimals, or scientific
    notation (``1.2346e-04``) when ``|value| <= 1e-3``. NaN prints ``nan``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def format_time_per_unit(seconds: float, unit_name: str) -> str:
    """``' 6ms/step'``: seconds, milliseconds or microseconds per unit, as Keras."""
    if seconds >= 1 or seconds == 0:
        return f" {seconds:.0f}s/{unit_name}"
    if seconds >= 1e-3:
        return f" {seconds * 1e3:.0f}ms/{unit_name}"
    return f" {seconds * 1e6:.0f}us/{unit_name}"


def format_eta(seconds: float) -> str:
    """``'1:02:03'``, ``'2:05'`` or ``'42s'``, as Keras."""
    if seconds > 3600:
        return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)
    if seconds > 60:
        return "%d:%02d" % (seconds // 60, seconds % 60)
    return "%ds" % seconds


class Progbar:
    """Displays a progress bar (``keras.utils.Progbar``).

    Args:
        target: total number of steps expected, ``None`` if unknown.
        width: width of the bar in characters.
        verbose: 0 (silent), 1 (bar), 2 (one line when finished).
        interval: minimum seconds between two redraws of the bar.
        stateful_metrics: names of values shown as given; all other values
            are averaged over the updates (weighted by steps), as in Keras.
        unit_name: what one step is called (``"step"``, ``"sample"``).
        dynamic_display: redraw in place (``True``) or print only the final
            line (``False``); ``None`` detects it from ``sys.stdout``.
    """

    def __init__(self, target: int | None, width: int = 20, verbose: int = 1, interval: float = 0.05,
                 stateful_metrics: Iterable[str] | None = None, unit_name: str = "step", *,
                 dynamic_display: bool | None = None):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics or ())
        self.dynamic_display = is_dynamic_display() if dynamic_display is None else bool(dynamic_display)
        self._values: dict[str, list] = {}  # name -> [weighted sum, weight]
        self._values_order: list[str] = []
        self._seen_so_far = 0
        self._start = _now()
        self._last_update = -math.inf
        self._time_after_first_step: float | None = None
        self._prev_total_width = 0

    # -- the cheap path ---------------------------------------------------------------------
    def redraw_due(self, current: int) -> bool:
        """Whether ``update(current)`` (not finalizing) would redraw now: only
        for ``verbose=1`` on a dynamic display, when ``interval`` has passed
        since the last redraw or ``current`` reaches the target."""
        if self.verbose != 1 or not self.dynamic_display:
            return False
        if self.target is not None and current >= self.target:
            return True
        return _now() - self._last_update >= self.interval

    def advance(self, current: int) -> None:
        """Record progress to step ``current`` without values or a redraw:
        what :meth:`update` does on steps where it would not draw."""
        if current == 1:
            self._time_after_first_step = _now()
        self._seen_so_far = current

    # -- Keras API --------------------------------------------------------------------------
    def update(self, current: int, values: Iterable[tuple[str, Any]] | None = None,
               finalize: bool | None = None) -> None:
        """Advance to step ``current`` (1-based count of steps done).

        Args:
            current: index of the current step.
            values: ``(name, value)`` pairs. Names in ``stateful_metrics`` are
                shown as given, others averaged over updates.
            finalize: whether this is the last update; defaults to
                ``current >= target``.
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for k, v in values or ():
            if k not in self._values:
                self._values_order.append(k)
            if k in self.stateful_metrics or finalize:
                self._values[k] = [v, 1]
            else:
                weight = max(current - self._seen_so_far, 1)
                entry = self._values.get(k)
                if entry is None:
                    self._values[k] = [v * weight, weight]
                else:
                    entry[0] += v * weight
                    entry[1] += weight
        if not finalize and not self.redraw_due(current):
            self.advance(current)
            return
        self._seen_so_far = current
        now = _now()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1:
            self._draw(current, now, time_per_unit, finalize)
        elif self.verbose == 2 and finalize:
            count = self._count(current)
            line = f"{count} - {now - self._start:.0f}s -{format_time_per_unit(time_per_unit, self.unit_name)}"
            print_msg(line + self._metrics_text())
        self._last_update = now

    def add(self, n: int, values: Iterable[tuple[str, Any]] | None = None) -> None:
        """Advance by ``n`` steps."""
        self.update(self._seen_so_far + n, values)

    # -- formatting -------------------------------------------------------------------------
    def _count(self, current: int) -> str:
        if self.target is not None and self.target > 0:
            return f"{current:>{len(str(self.target))}d}/{self.target}"
        return "%7d/Unknown" % current

    def _metrics_text(self) -> str:
        parts = []
        for k in self._values_order:
            total, weight = self._values[k]
            if not isinstance(total, (float, int)):
                try:
                    import numpy as np

                    total = float(np.mean(total))
                except (TypeError, ValueError):
                    parts.append(f" - {k}: {total}")
                    continue
            parts.append(f" - {k}: {format_value(total / max(1, weight))}")
        return "".join(parts)

    def _draw(self, current: int, now: float, time_per_unit: float, finalize: bool) -> None:
        ansi = self.dynamic_display
        bold, green, white, reset = ("\x1b[1m", "\x1b[32m", "\x1b[37m", "\x1b[0m") if ansi else ("",) * 4
        count = self._count(current)
        known = self.target is not None and self.target > 0
        if known:
            done = min(int(self.width * current / self.target), self.width)
            bar = f"{bold}{count}{reset} "
            plain = count + " " + "━" * self.width
            if done > 0:
                bar += f"{green}{'━' * done}{reset}"
            bar += f"{white}{'━' * (self.width - done)}{reset}"
        else:
            bar = plain = count
        if known and not finalize:
            clock = format_eta(time_per_unit * (self.target - current))
        else:
            clock = f"{now - self._start:.0f}s"
        tail = format_time_per_unit(time_per_unit, self.unit_name) + self._metrics_text()
        line = f"{bar} {bold}{clock}{reset}{tail}"
        width = len(plain) + 1 + len(clock) + len(tail)
        if not self.dynamic_display:
            if finalize:  # static display: the final line only
                print_msg(line)
            return
        message = "\r" + line
        if self._prev_total_width > width:  # blank out the rest of a longer previous line
            message += " " * (self._prev_total_width - width)
        if finalize:
            message += "\n"
        print_msg(message, line_break=False)
        self._prev_total_width = width

    def _estimate_step_duration(self, current: int, now: float) -> float:
        """Seconds per step; ignores the first step (compilation, warm-up)
        once more steps are done, as Keras does."""
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return per_unit
