"""Where ``fit``, ``evaluate`` and ``predict`` get their batches from.

* :class:`ArraySource` -- in-memory arrays: the core shuffles them with its
  seeded permutation, slices batches, and stacks ``steps_per_execution``
  batches at a time;
* :class:`StreamSource` -- batches the user's data makes: a Python generator or
  iterator of ``(x, y)``, a :class:`polykeras.utils.PyDataset`, a
  ``torch.utils.data.DataLoader``, a ``tf.data.Dataset`` or any iterable of
  NumPy batches (a JAX-friendly loader). Frameworks are recognised by the
  module their class comes from, so none is imported here. Each batch is
  converted to NumPy and checked on a background thread, up to
  ``max_queue_size`` batches ahead, so the step does not wait on Python data
  work while the producer keeps up.

Either way the trainer draws the step seeds, so a stream of the same batches
trains exactly as the arrays do (dropout included).

A generator or iterator is consumed across epochs (``steps_per_epoch``
batches each; without it, until it ends); a re-iterable source (a
PyDataset, a DataLoader, a ``tf.data.Dataset``, a list) starts a new pass
every epoch, cut to ``steps_per_epoch`` batches when given, and a
PyDataset's ``on_epoch_end`` is called after each pass.
"""

from __future__ import annotations

import math
import queue
import threading
from collections import deque
from typing import Any, Callable, Iterator

import numpy as np

from polykeras import model_data as data
from polykeras import random as _random


class ArraySource:
    """Arrays already checked (:func:`polykeras.model_data.prepare_x`/``prepare_y``); ``y`` is
    ``None`` for ``predict``, ``w`` (per-sample loss weights: an array, or a tuple of one per
    output) ``None`` without weights."""

    def __init__(self, x, y, batch_size: int, shuffle: bool = False, seed: int = 0, w=None):
        self.x, self.y, self.w, self.batch_size, self.shuffle, self.seed = x, y, w, batch_size, shuffle, seed
        self.n = data.n_samples(x)
        self.steps = math.ceil(self.n / batch_size)

    def epoch(self, epoch: int, per_execution: int | Callable[[int], int] = 1,
              start: int = 0) -> Iterator[tuple[int, Any, Any, Any]]:
        """``(k, x, y, w)``: one batch (``k == 1``), or ``k`` full batches stacked on a new leading axis;
        from batch ``start`` on (a resumed run). ``per_execution`` is ``steps_per_execution``, or a
        function of the full batches left that says how many the next chunk takes (asked per chunk)."""
        xs, ys, ws = self.x, self.y, self.w
        if self.shuffle:
            order = _random.shuffle_order(self.seed, epoch, self.n)
            xs, ys = data.take(xs, order), data.take(ys, order)
            ws = None if ws is None else data.take(ws, order)
        b, step = self.batch_size, start
        while step < self.steps:
            left = self.n // b - step
            k = per_execution(left) if callable(per_execution) else min(per_execution, left)
            if k > 1:
                lo, hi = step * b, (step + k) * b
                yield (k, data.stacked(xs, lo, hi, k), data.stacked(ys, lo, hi, k),
                       None if ws is None else data.stacked(ws, lo, hi, k))
            else:
                k = 1
                lo, hi = step * b, (step + 1) * b
                yield (1, data.rows(xs, lo, hi), None if ys is None else data.rows(ys, lo, hi),
                       None if ws is None else data.rows(ws, lo, hi))
            step += k


def is_stream(value) -> bool:
    """Whether ``value`` is batches to iterate rather than arrays (or a list/dict of arrays)."""
    if value is None or isinstance(value, (np.ndarray, dict, str, bytes)):
        return False
    if isinstance(value, (list, tuple)):
        return False  # a list of arrays for several inputs
    if hasattr(value, "__array__") or hasattr(value, "__array_interface__"):
        return False  # an array-like (a framework tensor) used as data
    return hasattr(value, "__iter__") or hasattr(value, "__getitem__") and hasattr(value, "__len__")


def _to_numpy(value):
    """A framework tensor (torch, tf, jax) or nested list/tuple/dict of them as NumPy (``None``, an
    unweighted output's sample weights, stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_numpy(v) for v in value]
    if hasattr(value, "detach"):  # torch: off the autograd graph and the device
        value = value.detach().cpu()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return np.asarray(value.numpy())
    return np.asarray(value)


class StreamSource:
    """Batches of ``(x, y)`` or ``(x, y, sample_weight)`` (``y`` left out for ``predict``) from
    user data.

    ``prepare(x, y, w)`` converts and checks one batch into ``(x, y, w)`` (the trainer's checks;
    ``x`` alone without targets); it runs on the producer thread. ``steps`` is ``steps_per_epoch`` (or ``validation_steps``/``steps``),
    else the source's length when it has one, else ``None``: until the data ends.
    """

    def __init__(self, source, prepare: Callable, steps: int | None = None, *, targets: bool = True,
                 what: str = "x", n_inputs: int = 1):
        self.source, self.prepare, self.targets, self.what = source, prepare, targets, what
        self.n_inputs = n_inputs  # predict: a list/tuple batch of another length is (x, y, ...), not x
        self.max_queue_size = int(getattr(source, "max_queue_size", 10) or 10)
        self.one_pass = hasattr(source, "__next__")  # a generator or iterator: consumed across epochs
        self.is_py_dataset = hasattr(source, "__getitem__") and hasattr(source, "on_epoch_end") and \
            hasattr(source, "__len__")
        if getattr(source, "use_multiprocessing", False):
            raise NotImplementedError("PyDataset(use_multiprocessing=True) is not supported yet; leave it False "
                                      "(workers > 1 load batches on threads)")
        length = len(source) if hasattr(source, "__len__") and not self.one_pass else None
        self.steps = steps if steps is not None else length
        if self.steps is not None and self.steps <= 0:
            raise ValueError(f"{what} yields no batches (steps={self.steps})")
        self._queue: queue.Queue | None = None  # a one-pass source's producer lives across epochs
        self._first = None  # a one-pass source's first batch, taken by first() and yielded first
        self.last_count = 0

    def first(self):
        """The first batch, prepared on the calling thread (it may build the model); a
        one-pass source keeps it for its first epoch."""
        if self.one_pass:
            if self._queue is None:
                self._queue, self._stop = self._start(None)
            kind, item = self._queue.get()
            if kind == "error":
                raise item
            if kind == "end":
                raise ValueError(f"{self.what} yielded no batches")
            self._first = item
            return item
        batch = self.source[0] if self.is_py_dataset else next(iter(self._batches()), None)
        if batch is None:
            raise ValueError(f"{self.what} yielded no batches")
        return self._split(batch)

    # -- producing ------------------------------------------------------------------------------
    def _batches(self) -> Iterator:
        if self.is_py_dataset:
            workers = int(getattr(self.source, "workers", 1) or 1)
            if workers > 1:
                from concurrent.futures import ThreadPoolExecutor

                n, pending = len(self.source), deque()
                with ThreadPoolExecutor(workers) as pool:  # at most 2 x workers batches in flight, in order
                    for i in range(n):
                        while len(pending) < 2 * workers and i + len(pending) < n:
                            pending.append(pool.submit(self.source.__getitem__, i + len(pending)))
                        yield pending.popleft().result()
            else:
                for i in range(len(self.source)):
                    yield self.source[i]
        elif hasattr(self.source, "as_numpy_iterator"):  # tf.data.Dataset
            yield from self.source.as_numpy_iterator()
        else:
            yield from (self.source if self.one_pass else iter(self.source))

    def _split(self, batch):
        if not self.targets and not (isinstance(batch, (tuple, list)) and len(batch) != self.n_inputs):
            batch = (batch,)  # predict: a batch may be x alone (a list of arrays for several inputs)
        if not isinstance(batch, (tuple, list)) or not 1 <= len(batch) <= 3 or (self.targets and len(batch) < 2):
            raise ValueError(f"each batch of {self.what} must be a tuple (x, y)"
                             f"{' or (x,)' if not self.targets else ''}, got {type(batch).__name__}"
                             f"{f' of length {len(batch)}' if isinstance(batch, (tuple, list)) else ''}")
        x = _to_numpy(batch[0])
        if not self.targets:
            return self.prepare(x, None, None)
        w = _to_numpy(batch[2]) if len(batch) == 3 and batch[2] is not None else None
        return self.prepare(x, _to_numpy(batch[1]), w)

    def _produce(self, out: queue.Queue, stop: threading.Event, limit: int | None) -> None:
        try:
            for count, batch in enumerate(self._batches()):
                if limit is not None and count >= limit:
                    break
                item = ("batch", self._split(batch))
                while not stop.is_set():
                    try:
                        out.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put(("end", None))
        except BaseException as exc:  # handed to the training thread, which raises it
            out.put(("error", exc))

    def _start(self, limit: int | None) -> tuple[queue.Queue, threading.Event]:
        out: queue.Queue = queue.Queue(self.max_queue_size)
        stop = threading.Event()
        threading.Thread(target=self._produce, args=(out, stop, limit), daemon=True,
                         name="polykeras-batches").start()
        return out, stop

    # -- consuming ------------------------------------------------------------------------------
    def epoch(self, epoch: int, per_execution: int = 1, start: int = 0) -> Iterator[tuple[int, Any, Any, Any]]:
        """``(1, x, y, w)`` per batch (``(1, x, None, None)`` without targets), ``steps`` of them or until
        the data ends."""
        if self.one_pass:
            if self._queue is None:
                self._queue, self._stop = self._start(None)
            out, stop = self._queue, None
        else:
            out, stop = self._start(self.steps)
        count = 0
        try:
            while self.steps is None or count < self.steps:
                if self._first is not None:
                    kind, item, self._first = "batch", self._first, None
                else:
                    kind, item = out.get()
                if kind == "error":
                    item.add_note(f"raised by {self.what} while fetching batch {count + 1} of epoch {epoch + 1}; "
                                  f"the model keeps the weights of the last completed step (batch {count})")
                    raise item
                if kind == "end":
                    if self.one_pass:
                        out.put(("end", None))  # later epochs see the end too
                    break
                count += 1
                yield (1, *item) if self.targets else (1, item, None, None)
        finally:
            self.last_count = count
            if stop is not None:
                stop.set()
            if self.is_py_dataset:
                self.source.on_epoch_end()

    def close(self) -> None:
        if self._queue is not None:
            self._stop.set()
