"""What the monitoring callbacks share: is a bigger value of a metric better?

``EarlyStopping``, ``ModelCheckpoint`` and ``ReduceLROnPlateau`` take
``mode="auto"`` and must work out whether the monitored quantity is to be
minimized or maximized. Keras 3 asks the compiled metric objects for their
direction; polykeras metrics are names, so the direction comes from the name
(with a metric's ``_direction`` attribute, when the model has one, first).
"""

from __future__ import annotations

import warnings

_UP = ("acc", "auc", "precision", "recall", "f1", "fbeta", "iou", "io_u", "r2", "true_positives", "true_negatives",
       "cosine_similarity")
_DOWN = ("loss", "error", "crossentropy", "mse", "mae", "mape", "msle", "rmse", "hinge", "divergence", "logcosh",
         "poisson", "false_positives", "false_negatives")


def checked_mode(mode: str, owner: str) -> str:
    """``mode`` if valid, else ``"auto"`` with a warning (as Keras)."""
    if mode not in ("auto", "min", "max"):
        warnings.warn(f"{owner} mode {mode!r} is unknown, fallback to auto mode. Use 'min', 'max' or 'auto'.",
                      stacklevel=3)
        return "auto"
    return mode


def infer_direction(monitor: str, mode: str, model=None, owner: str = "Callback", default: str | None = None) -> str:
    """``"min"`` or ``"max"``: the direction in which ``monitor`` improves.

    ``mode`` ``"min"``/``"max"`` wins; for ``"auto"``, a metric object on
    ``model.metrics`` with a ``_direction`` (``"up"``/``"down"``) decides,
    else the name: ``loss``, errors and crossentropies go down; accuracy,
    AUC, precision, recall and the like go up.

    Raises:
        ValueError: ``mode="auto"``, the name says nothing and no ``default``
            is given (as Keras 3's ``EarlyStopping`` and ``ModelCheckpoint``).
    """
    if mode in ("min", "max"):
        return mode
    name = monitor.removeprefix("val_")
    for metric in getattr(model, "metrics", None) or ():
        direction = getattr(metric, "_direction", None)
        if getattr(metric, "name", None) == name and direction in ("up", "down"):
            return "max" if direction == "up" else "min"
    lowered = name.lower()
    if lowered == "loss" or lowered.endswith("loss"):
        return "min"
    if any(word in lowered for word in _DOWN):
        return "min"
    if any(word in lowered for word in _UP):
        return "max"
    if default is not None:
        return default
    raise ValueError(
        f"{owner} callback received monitor={monitor!r}, but polykeras cannot tell whether that metric should be "
        "maximized or minimized. Pass mode='max' to monitor the highest value, or mode='min' for the lowest."
    )


def missing_monitor_warning(what: str, monitor: str, logs: dict) -> None:
    """Keras's warning when ``monitor`` is not in the epoch logs (``what``:
    ``"Early stopping"``, ``"Learning rate reduction is"``)."""
    warnings.warn(f"{what} conditioned on metric `{monitor}` which is not available. "
                  f"Available metrics are: {','.join(logs)}", stacklevel=3)
