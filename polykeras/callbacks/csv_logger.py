"""``CSVLogger``: stream the epoch logs to a CSV file."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable

import numpy as np

from polykeras.callbacks.callback import Callback


class CSVLogger(Callback):
    """Stream epoch results to a CSV file (``keras.callbacks.CSVLogger``).

    Keras's format: a header ``epoch,<keys sorted>`` (when no ``val_`` key
    exists, ``val_<key>`` columns are added anyway and hold ``NA``), one row
    per epoch with the 0-based epoch index, flushed after each epoch.

    Args:
        filename: path of the CSV file, e.g. ``"run/log.csv"``.
        separator: field separator.
        append: append to an existing file (no second header) instead of
            overwriting it; useful to continue training.
    """

    def __init__(self, filename, separator: str = ",", append: bool = False):
        super().__init__()
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = append
        self.writer = None
        self.keys: list[str] | None = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs=None) -> None:
        from polykeras.distribution import is_chief

        self._quiet = not is_chief()  # one file per run: in a run of several processes, rank 0 writes it
        if self._quiet:
            return
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename) as f:
                    self.append_header = not f.readline()
            mode = "a"
        else:
            mode = "w"
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode, newline="")
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None) -> None:
        if getattr(self, "_quiet", False):
            return
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += ["val_" + k for k in self.keys]
        if self.writer is None:
            dialect = type("CSVLoggerDialect", (csv.excel,), {"delimiter": self.sep})
            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys, dialect=dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((key, _cell(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None) -> None:
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


def _cell(value):
    if isinstance(value, str) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value
    if isinstance(value, Iterable):
        return f'"[{", ".join(map(str, value))}]"'
    return value
