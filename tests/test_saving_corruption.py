"""Damaged model files: whatever the damage, loading either gives a model or raises
ModelFileError naming the file -- never a bare zlib, zipfile or KeyError.

A seeded loop over four kinds of damage (bit flips, truncation, inserted bytes, a byte
of one archive member changed and the archive rebuilt with valid checksums), on
polykeras's own ``.polykeras`` file and on a Keras 3 ``.keras`` file (which needs h5py), each of a
model that has trained one step, so the files hold compile settings and optimizer state."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.saving import ModelFileError

DAMAGES = ("flip", "truncate", "insert", "member")


def damaged(raw: bytes, kind: str, rng: np.random.Generator) -> bytes:
    data = bytearray(raw)
    if kind == "flip":
        for _ in range(rng.integers(1, 4)):
            data[rng.integers(0, len(data))] ^= 1 << int(rng.integers(0, 8))
    elif kind == "truncate":
        data = data[: rng.integers(0, len(data))]
    elif kind == "insert":
        at = rng.integers(0, len(data))
        data[at:at] = rng.integers(0, 256, rng.integers(1, 20)).astype(np.uint8).tobytes()
    else:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            members = {name: bytearray(zf.read(name)) for name in zf.namelist()}
        body = members[list(members)[rng.integers(0, len(members))]]
        body[rng.integers(0, len(body))] = rng.integers(0, 256)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, value in members.items():
                zf.writestr(name, bytes(value))
        data = buffer.getvalue()
    return bytes(data)


def model():
    keras.utils.set_random_seed(0)
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    dense = layers.Dense(3)
    m = keras.Model([a, b], layers.Dense(2)(layers.Concatenate()([dense(a), dense(b)])))
    m.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(1)
    m.train_on_batch([rng.normal(size=(4, 4)), rng.normal(size=(4, 4))], rng.normal(size=(4, 2)))
    return m


X = [np.random.default_rng(2).normal(size=(3, 4)) for _ in range(2)]


@pytest.mark.parametrize("suffix, copies", [(".polykeras", 2000), (".keras", 400),
                                            pytest.param(".polykeras", 10_000, marks=pytest.mark.slow),
                                            pytest.param(".keras", 10_000, marks=pytest.mark.slow)])
def test_every_damaged_file_loads_or_raises_model_file_error(tmp_path, suffix, copies):
    """Loaded means usable: the model predicts finite values of the right shape."""
    if suffix == ".keras":
        pytest.importorskip("h5py")
    path = tmp_path / f"model{suffix}"
    model().save(path)
    raw = path.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "ModelFileError": 0}
    target = tmp_path / f"damaged{suffix}"
    for i in range(copies):
        target.write_bytes(damaged(raw, DAMAGES[i % len(DAMAGES)], rng))
        try:
            loaded = keras.models.load_model(target)
        except ModelFileError as exc:
            assert str(target) in str(exc)
            outcomes["ModelFileError"] += 1
            continue
        outcomes["loaded"] += 1
        prediction = loaded.predict(X, verbose=0)
        assert prediction.shape == (3, 2) and np.isfinite(prediction).all(), (i, DAMAGES[i % len(DAMAGES)])
    print(suffix, outcomes)
    assert outcomes["ModelFileError"] > copies // 2


@pytest.mark.parametrize("suffix, member", [(".polykeras", "weights.npz"), (".keras", "model.weights.h5")])
def test_weights_changed_inside_a_valid_archive_fail_their_checksum(tmp_path, suffix, member):
    """polykeras's own file checks its arrays against checksums; so does a .keras file polykeras wrote
    (the checksum is in metadata.json, which Keras does not read)."""
    if suffix == ".keras":
        pytest.importorskip("h5py")
    path = tmp_path / f"model{suffix}"
    model().save(path)
    with zipfile.ZipFile(path) as zf:
        members = {name: bytearray(zf.read(name)) for name in zf.namelist()}
    members[member][-30] ^= 0xFF
    with zipfile.ZipFile(path, "w") as zf:
        for name, value in members.items():
            zf.writestr(name, bytes(value))
    with pytest.raises(ModelFileError, match="do not match their checksum"):
        keras.models.load_model(path)
