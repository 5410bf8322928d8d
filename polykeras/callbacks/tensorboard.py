"""``TensorBoard``: the epoch (and batch) logs, the learning rate and weight histograms as
TensorBoard event files, written with ``tensorboardX`` (the ``tensorboard`` extra)."""

from __future__ import annotations

import os

from polykeras.callbacks.callback import Callback


def _writer_class():
    try:
        from tensorboardX import SummaryWriter
    except ImportError as exc:
        raise ImportError(f"the TensorBoard callback writes its event files with tensorboardX ({exc}); install it "
                          "with: pip install tensorboardX (or pip install 'polykeras[tensorboard]')") from None
    return SummaryWriter


class TensorBoard(Callback):
    """Keras's ``keras.callbacks.TensorBoard``, for scalars and histograms.

    Like Keras, it writes ``log_dir/train`` and ``log_dir/validation``: each epoch's logs as
    ``epoch_<name>`` (``val_`` logs in the validation run, without the prefix), the learning rate
    as ``epoch_learning_rate``; with ``update_freq`` an integer N, every N-th batch's running
    logs as ``batch_<name>`` (step: batches since the fit began); with ``histogram_freq`` N, a
    histogram of every weight (``<layer>/<weight>``) every N epochs. ``write_graph``,
    ``write_images``, ``profile_batch`` and the embeddings options are accepted and ignored.
    """

    def __init__(self, log_dir="logs", histogram_freq: int = 0, write_graph: bool = True, write_images: bool = False,
                 write_steps_per_second: bool = False, update_freq="epoch", profile_batch=0, embeddings_freq: int = 0,
                 embeddings_metadata=None):
        super().__init__()
        if update_freq not in ("epoch", "batch") and not (type(update_freq) is int and update_freq > 0):
            raise ValueError(f"update_freq must be 'epoch', 'batch' or a positive number of batches, got "
                             f"{update_freq!r}")
        self._SummaryWriter = _writer_class()  # fail at construction, with the install line
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = int(histogram_freq)
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self._writers: dict = {}
        self._batches = 0

    def _writer(self, run: str):
        if run not in self._writers:
            self._writers[run] = self._SummaryWriter(os.path.join(self.log_dir, run))
        return self._writers[run]

    def _implements(self, hook: str) -> bool:  # batch hooks only for batch-level scalars; rank 0 only
        from polykeras.distribution import is_chief

        return (is_chief() and super()._implements(hook)
                and (hook != "on_train_batch_end" or self.update_freq != "epoch"))

    def _wants_batch_logs(self, batch: int) -> bool:
        return self.update_freq != "epoch" and (self._batches + 1) % self.update_freq == 0

    def on_train_begin(self, logs=None):
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.update_freq != "epoch" and self._batches % self.update_freq == 0:
            for name, value in (logs or {}).items():
                self._writer("train").add_scalar(f"batch_{name}", float(value), self._batches)

    def on_epoch_end(self, epoch, logs=None):
        from polykeras.distribution import is_chief

        if not is_chief():  # several processes: rank 0 writes the run's events
            return
        for name, value in (logs or {}).items():
            run, name = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            self._writer(run).add_scalar(f"epoch_{name}", float(value), epoch)
        self._writer("train").add_scalar("epoch_learning_rate", float(self.model.optimizer.learning_rate), epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            for weight in self.model.weights:
                self._writer("train").add_histogram(weight.path, weight.numpy(), epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
