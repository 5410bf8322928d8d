"""``BackupAndRestore``: a run that dies (``kill -9``, a lost machine) restarts where its last
backup left it and ends with the weights an uninterrupted run would have."""

from __future__ import annotations

import os
from pathlib import Path

from polykeras import distribution
from polykeras.callbacks.callback import Callback
from polykeras.distribution import is_chief


class BackupAndRestore(Callback):
    """Keras's ``keras.callbacks.BackupAndRestore``.

    Args:
        backup_dir: a folder for the backup (``backup.polykeras``: polykeras's own model file with
            the weights, the optimizer's state and where the fit stood -- epoch, step and the run's
            data-order seed -- written atomically, so a crash mid-write leaves the previous one;
            polykeras's own format because the backup is for this run to restart from, not for
            exchange: it needs NumPy alone, checks its arrays against checksums, and restores
            by position into the same architecture whatever its automatic layer names).
        save_freq: ``"epoch"`` (at each epoch's end), an integer N (every N batches), or
            ``False`` (never: only restore).
        delete_checkpoint: remove the backup when ``fit`` ends normally.

    When ``fit`` starts and a backup exists, the model takes its weights and optimizer state and
    the fit continues from its epoch and step with the same data order and step seeds, so
    "killed and restarted" trains exactly as "never stopped" (on backends with
    ``"optimizer_state"`` in ``Backend.training_features``; on others the optimizer's moments
    restart, with a warning). Restarting mid-epoch needs array data; a generator or dataset
    resumes at epoch boundaries.

    Data-parallel runs (:mod:`polykeras.distribution`): only rank 0 writes and deletes the
    backup; every process reads it when the fit starts, so ``backup_dir`` must be on a file
    system all processes see -- a process that finds another backup than rank 0's (or none)
    stops with an error saying so. A backup holds no replica count: the global batches, their
    order and the step seeds are the same for any number of replicas, so a run backed up on N
    replicas resumes on M (one device included) and ends as the uninterrupted run, up to the
    all-reduce's summation order (``tests/test_distribution_resume.py``).
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint: bool = True, double_checkpoint=False):
        super().__init__()
        if not (save_freq == "epoch" or save_freq is False or (type(save_freq) is int and save_freq > 0)):
            raise ValueError(f"save_freq must be 'epoch', False or a positive number of batches, got {save_freq!r}")
        self.backup_dir = Path(os.fspath(backup_dir))
        self.path = self.backup_dir / "backup.polykeras"
        self.save_freq, self.delete_checkpoint = save_freq, delete_checkpoint
        self._epoch = 0

    def _implements(self, hook: str) -> bool:  # batch hooks only when backing up every N batches
        return super()._implements(hook) and (hook != "on_train_batch_end" or type(self.save_freq) is int)

    def _wants_batch_logs(self, batch: int) -> bool:
        return False  # a backup needs no metrics: no device-to-host sync for it

    def on_train_begin(self, logs=None):
        from polykeras.saving import restore_training  # either format, by contents

        state = restore_training(self.model, self.path) if self.path.exists() else None
        self._agree(state)
        if state is None:
            return
        self.model._apply_pending_optimizer_state()
        self.model._resume_from = dict(state)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if type(self.save_freq) is int and (batch + 1) % self.save_freq == 0:
            steps = (self.params or {}).get("steps")
            done = steps is not None and batch + 1 >= steps  # the epoch's last batch: resume at the next epoch
            self._backup(self._epoch + 1 if done else self._epoch, 0 if done else batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._backup(epoch + 1, 0)

    def on_train_end(self, logs=None):  # only a fit that ends normally gets here
        if self.delete_checkpoint and is_chief():
            self.path.unlink(missing_ok=True)

    def _agree(self, state) -> None:
        """In a run of several processes: refuse to go on where this process found another
        backup than rank 0 (a ``backup_dir`` not shared by all machines), which would train
        from other weights or another step. Rank 0's side then fails at its next collective."""
        program = getattr(self.model, "_program", None)
        if getattr(program, "num_replicas", 1) == 1 or distribution.cluster().num_processes == 1:
            return
        mine = -1 if state is None else int(state["epoch"]) * 1_000_003 + int(state["step"]) + 7 * int(state["seed"])
        mine %= 2 ** 62
        chief = distribution.agreed_seed(program, mine)
        if chief != mine:
            rank = distribution.cluster().process_id
            found = "no backup" if state is None else f"a backup at epoch {state['epoch']}, step {state['step']}"
            raise RuntimeError(f"BackupAndRestore: process {rank} found {found} in {self.backup_dir}, but rank 0 found "
                               "another: in a run of several processes every process reads rank 0's backup, so "
                               "backup_dir must be on a file system all of them share")

    def _backup(self, epoch: int, step: int) -> None:
        if not is_chief():  # rank 0 alone writes: the others need not build the file
            return
        from polykeras.saving.portable import save_model

        save_model(self.model, self.path, training_state={"epoch": epoch, "step": step,
                                                          "seed": self.model._fit_seed})
