"""Callbacks: hooks into ``fit``, ``evaluate`` and ``predict`` (``keras.callbacks``).

Everything Keras 3 users reach for -- ``EarlyStopping``, ``ModelCheckpoint``,
``ReduceLROnPlateau``, ``CSVLogger``, ``TerminateOnNaN``, ``LambdaCallback``,
``LearningRateScheduler``, ``BackupAndRestore``, ``TensorBoard`` -- with Keras's arguments, defaults and messages,
plus the ``History`` and ``ProgbarLogger`` that ``fit`` adds itself.

The trainer drives them through :class:`CallbackList`, which keeps the
per-step path lean: batch hooks nobody implements are not called, and batch
logs (a device-to-host sync) are computed only when some callback reads them.
"""

from polykeras.callbacks.backup_and_restore import BackupAndRestore
from polykeras.callbacks.callback import Callback
from polykeras.callbacks.callback_list import CallbackList
from polykeras.callbacks.csv_logger import CSVLogger
from polykeras.callbacks.early_stopping import EarlyStopping
from polykeras.callbacks.history import History
from polykeras.callbacks.lambda_callback import LambdaCallback
from polykeras.callbacks.learning_rate import LearningRateScheduler, ReduceLROnPlateau
from polykeras.callbacks.model_checkpoint import ModelCheckpoint
from polykeras.callbacks.progbar_logger import ProgbarLogger
from polykeras.callbacks.tensorboard import TensorBoard
from polykeras.callbacks.terminate_on_nan import TerminateOnNaN

__all__ = ["BackupAndRestore", "Callback", "CallbackList", "CSVLogger", "EarlyStopping", "History", "LambdaCallback",
           "LearningRateScheduler", "ModelCheckpoint", "ProgbarLogger", "ReduceLROnPlateau", "TensorBoard", "TerminateOnNaN"]
