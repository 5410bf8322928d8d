"""``keras.preprocessing.sequence.pad_sequences``."""

from polykeras.utils.sequence import pad_sequences

__all__ = ["pad_sequences"]
