"""``pad_sequences`` with Keras's semantics."""

from __future__ import annotations

import numpy as np


def pad_sequences(sequences, maxlen: int | None = None, dtype="int32", padding: str = "pre",
                  truncating: str = "pre", value=0.0) -> np.ndarray:
    """Pad (or truncate) variable-length sequences to one length.

    ``padding``/``truncating`` are ``"pre"`` (default, as Keras) or ``"post"``;
    ``maxlen`` defaults to the longest sequence.
    """
    if padding not in ("pre", "post"):
        raise ValueError(f"padding must be 'pre' or 'post', got {padding!r}")
    if truncating not in ("pre", "post"):
        raise ValueError(f"truncating must be 'pre' or 'post', got {truncating!r}")
    try:
        sequences = [np.asarray(s) for s in sequences]
    except TypeError:
        raise ValueError("pad_sequences takes a list of sequences (each a list or array)") from None
    lengths = [len(s) for s in sequences]
    if maxlen is None:
        maxlen = max(lengths, default=0)
    sample_shape = next((s.shape[1:] for s in sequences if len(s)), ())
    out = np.full((len(sequences), maxlen) + sample_shape, value, dtype=dtype)
    for i, s in enumerate(sequences):
        if not len(s) or maxlen == 0:
            continue
        trunc = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        if trunc.shape[1:] != sample_shape:
            raise ValueError(f"sequence {i} has element shape {trunc.shape[1:]}, expected {sample_shape}")
        if padding == "post":
            out[i, :len(trunc)] = trunc
        else:
            out[i, -len(trunc):] = trunc
    return out
