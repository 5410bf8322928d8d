"""``PyDataset`` (Keras 3's name; ``Sequence`` in Keras 2): a dataset of batches by index."""

from __future__ import annotations


class PyDataset:
    """Subclass it and implement ``__len__`` (the number of batches) and
    ``__getitem__(index)`` (batch ``index`` as ``(x, y)``); ``on_epoch_end``
    runs after every pass (reshuffle there). ``fit``/``evaluate``/``predict``
    prepare up to ``max_queue_size`` batches ahead on a background thread, on
    ``workers`` threads when it is more than 1 (in order either way).
    ``use_multiprocessing=True`` is not supported yet."""

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10):
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.workers = int(workers)
        self.use_multiprocessing = bool(use_multiprocessing)
        self.max_queue_size = int(max_queue_size)

    def __getitem__(self, index: int):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index) returning (x, y)")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__ (the number of batches)")

    @property
    def num_batches(self) -> int:
        return len(self)

    def on_epoch_begin(self) -> None:
        """Called before each pass (kept for Keras compatibility)."""

    def on_epoch_end(self) -> None:
        """Called after each pass."""


Sequence = PyDataset  # Keras 2's name
