"""Keras 2's ``keras.preprocessing`` namespace (``preprocessing.sequence.pad_sequences``)."""

from polykeras.preprocessing import sequence

__all__ = ["sequence"]
