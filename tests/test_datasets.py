"""Tests of ``polykeras.datasets``: loaders on the real files of ``../shared/datasets``, the search
order, the subset warning, the bundled MNIST fallback, corrupt and malicious files, and the download
path against a real HTTP server on 127.0.0.1 (no mocks of the HTTP layer).

Every test runs with ``KERAS_HOME`` in a temporary folder and ``POLYKERAS_DATASETS_URL`` at a closed
local port, so nothing here touches ``~/.keras`` or the network.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from polykeras.datasets import (DatasetChecksumError, DatasetCorruptError, DatasetNotFoundError,
                                DatasetSubsetWarning, _fetch, _files, cifar10, fashion_mnist, imdb, mnist)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


# ------------------------------------------------------------------ fixtures
def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No real Keras cache, no network: downloads go to a closed local port."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("POLYKERAS_DATASETS_URL", _closed_port_url())
    monkeypatch.delenv("POLYKERAS_DATA_DIR", raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def shared(real_data):
    """The real datasets (``real_data`` from conftest; skipped where absent)."""
    return real_data


@pytest.fixture
def empty_dir(monkeypatch, tmp_path):
    """POLYKERAS_DATA_DIR is an empty folder (the download target)."""
    d = tmp_path / "data"
    d.mkdir()
    monkeypatch.setenv("POLYKERAS_DATA_DIR", str(d))
    return d


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.lstrip("/")
        if name in self.server.truncate:  # announce the whole file, send half, hang up
            body = (Path(self.directory) / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(monkeypatch, tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``root``; ``POLYKERAS_DATASETS_URL`` points at it."""
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.truncate = set()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("POLYKERAS_DATASETS_URL", f"http://127.0.0.1:{httpd.server_address[1]}/")
    yield httpd, root
    httpd.shutdown()
    httpd.server_close()


def _subset_warnings(record):
    return [w for w in record if issubclass(w.category, DatasetSubsetWarning)]


def _fake_mnist(path: Path, n_train=12, n_test=5) -> bytes:
    rng = np.random.default_rng(0)
    np.savez_compressed(path, x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                        y_train=rng.integers(0, 10, n_train, dtype=np.uint8),
                        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                        y_test=rng.integers(0, 10, n_test, dtype=np.uint8))
    return path.read_bytes()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# ------------------------------------------------------------------ MNIST / Fashion-MNIST
def test_mnist_real_subset(shared):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        (x, y), (xt, yt) = mnist.load_data()
    assert x.shape == (17_435, 28, 28) and xt.shape == (10_000, 28, 28)
    assert x.dtype == xt.dtype == y.dtype == yt.dtype == np.uint8
    assert y.shape == (17_435,) and yt.shape == (10_000,)
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the official first labels
    assert set(np.unique(y)) == set(np.unique(yt)) == set(range(10))
    assert x.max() == 255 and x.min() == 0
    assert np.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # official test set
    [w] = _subset_warnings(record)
    text = str(w.message)
    assert str(shared / "mnist.npz") in text and "not the official" in text
    assert "17,435/10,000" in text and "60,000/10,000" in text and "731c5ac6" in text
    assert w.filename == __file__  # points at the caller


def test_subset_warning_can_be_silenced(shared):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DatasetSubsetWarning)
        mnist.load_data()
        imdb.load_data()
    assert not record


def test_local_file_hashed_once(shared, monkeypatch, tmp_path):
    monkeypatch.setattr(_files, "_DIGESTS", {})
    calls = []
    real = _files._compute
    monkeypatch.setattr(_files, "_compute", lambda path, algos: calls.append(path) or real(path, algos))
    with pytest.warns(DatasetSubsetWarning):
        mnist.load_data()
    with pytest.warns(DatasetSubsetWarning):
        mnist.load_data()
    assert len(calls) == 1
    copy = tmp_path / "copy" / "mnist.npz"  # another file (path/mtime/size) is hashed anew
    copy.parent.mkdir()
    copy.write_bytes((shared / "mnist.npz").read_bytes())
    with pytest.warns(DatasetSubsetWarning):
        mnist.load_data(path=str(copy))
    assert len(calls) == 2


def test_mnist_explicit_path_and_missing_path(shared, tmp_path):
    with pytest.warns(DatasetSubsetWarning):
        (x, _), _ = mnist.load_data(path=str(shared / "mnist.npz"))
    assert len(x) == 17_435
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        mnist.load_data(path=str(tmp_path / "nope" / "mnist.npz"))


def test_fashion_mnist_complete_and_official(shared):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        (x, y), (xt, yt) = fashion_mnist.load_data()
    assert not _subset_warnings(record)  # re-compressed, but the content is the official one
    assert x.shape == (60_000, 28, 28) and xt.shape == (10_000, 28, 28)
    assert x.dtype == y.dtype == xt.dtype == yt.dtype == np.uint8
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10
    assert y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert x.flags.writeable


def test_bundled_mnist_fallback(empty_dir, monkeypatch):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        (x, y), (xt, yt) = mnist.load_data()
    assert x.shape == (17_435, 28, 28) and xt.shape == (10_000, 28, 28) and y.dtype == yt.dtype == np.uint8
    [w] = _subset_warnings(record)
    text = str(w.message)
    assert str(mnist.BUNDLED) in text and "bundled" in text and "17,435/10,000" in text
    assert str(empty_dir) in text and "Connection refused" in text
    assert _leftovers(empty_dir) == []
    if SHARED.is_dir():
        assert mnist.BUNDLED.read_bytes() == (SHARED / "mnist.npz").read_bytes()


# ------------------------------------------------------------------ search order
def test_search_order_data_dirs_then_keras_cache(monkeypatch, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    keras_cache = tmp_path / "keras_home" / "datasets"
    for d, n in ((second, 7), (keras_cache, 9)):
        d.mkdir(parents=True)
        _fake_mnist(d / "mnist.npz", n_train=n)
    first.mkdir()
    with pytest.warns(DatasetSubsetWarning):
        (x, _), _ = mnist.load_data()  # POLYKERAS_DATA_DIR unset: the Keras cache
    assert len(x) == 9
    monkeypatch.setenv("POLYKERAS_DATA_DIR", os.pathsep.join([str(first), str(second)]))
    with pytest.warns(DatasetSubsetWarning):
        (x, _), _ = mnist.load_data()  # the list is searched in order, before the Keras cache
    assert len(x) == 7
    assert [label for _, label in _files.search_dirs()] == ["POLYKERAS_DATA_DIR"] * 2 + ["Keras cache"]


def test_cifar_in_keras3_cache_layout(shared, monkeypatch, tmp_path):
    target = tmp_path / "keras_home" / "datasets" / "cifar-10-batches-py-target"
    target.mkdir(parents=True)
    (target / "cifar-10-batches-py").symlink_to(shared / "cifar-10-batches-py")
    monkeypatch.delenv("POLYKERAS_DATA_DIR")
    with pytest.warns(DatasetSubsetWarning):
        (x, _), _ = cifar10.load_data()
    assert len(x) == 5_085


# ------------------------------------------------------------------ CIFAR-10
def test_cifar10_real_subset(shared):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        (x, y), (xt, yt) = cifar10.load_data()
    assert x.shape == (5_085, 32, 32, 3) and xt.shape == (1_017, 32, 32, 3)
    assert y.shape == (5_085, 1) and yt.shape == (1_017, 1)
    assert x.dtype == y.dtype == xt.dtype == yt.dtype == np.uint8
    assert set(np.unique(y)) == set(range(10))
    # independent reading of the (trusted) shared pickles: rows are R(1024) G(1024) B(1024)
    raw = [pickle.loads((shared / "cifar-10-batches-py" / b).read_bytes(), encoding="bytes") for b in cifar10.BATCHES]
    data = np.concatenate([r[b"data"] for r in raw[:5]])
    assert np.array_equal(x, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert np.array_equal(x[0, :, :, 0], data[0, :1024].reshape(32, 32))
    assert y.ravel().tolist() == [label for r in raw[:5] for label in r[b"labels"]]
    assert yt.ravel().tolist() == raw[5][b"labels"]
    [w] = _subset_warnings(record)
    assert "5,085/1,017" in str(w.message) and "50,000/10,000" in str(w.message) and "data_batch_3" in str(w.message)


def _cifar_tarball(path: Path, n=3, protocol=2, members=None) -> bytes:
    rng = np.random.default_rng(1)
    with tarfile.open(path, "w:gz") as tar:
        for name in members or (*cifar10.BATCHES, "batches.meta"):
            batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                     b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                     b"filenames": [f"img{i}.png".encode() for i in range(n)]}
            blob = pickle.dumps(batch, protocol=protocol)
            info = tarfile.TarInfo(name if name.startswith(("/", "..")) else f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path.read_bytes()


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_download_and_extract(server, empty_dir, monkeypatch, capfd, protocol):
    _, root = server
    blob = _cifar_tarball(root / "cifar-10-python.tar.gz", protocol=protocol)
    monkeypatch.setitem(_files.CHECKSUMS, "cifar-10-python.tar.gz", (_sha256(blob),))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        (x, y), (xt, yt) = cifar10.load_data()
    assert not _subset_warnings(record)  # just verified: not hashed again, not warned about
    assert x.shape == (15, 32, 32, 3) and y.shape == (15, 1) and xt.shape == (3, 32, 32, 3) and yt.shape == (3, 1)
    assert "cifar-10-python.tar.gz" in capfd.readouterr().err
    assert sorted(p.name for p in empty_dir.iterdir()) == ["cifar-10-batches-py"]  # tarball removed
    with pytest.warns(DatasetSubsetWarning, match="data_batch_1"):  # later loads: a local, non-official folder
        cifar10.load_data()


def test_cifar10_local_tarball_and_unsafe_members(empty_dir, tmp_path, monkeypatch):
    _cifar_tarball(empty_dir / "cifar-10-python.tar.gz")
    with pytest.warns(DatasetSubsetWarning):
        (x, _), _ = cifar10.load_data()
    assert len(x) == 15 and (empty_dir / "cifar-10-batches-py" / "test_batch").is_file()
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    _cifar_tarball(evil_dir / "cifar-10-python.tar.gz", members=("../escaped",))
    monkeypatch.setenv("POLYKERAS_DATA_DIR", str(evil_dir))
    with pytest.raises(DatasetCorruptError, match="unexpected member"):
        cifar10.load_data()
    assert not (tmp_path / "escaped").exists()
    assert sorted(p.name for p in evil_dir.iterdir()) == ["cifar-10-python.tar.gz"]


def test_cifar10_not_found_message(empty_dir):
    with pytest.raises(DatasetNotFoundError) as info:
        cifar10.load_data()
    text = str(info.value)
    assert "cifar-10-python.tar.gz" in text and "c58f30108f718f92721af3b95e74349a" in text
    assert "cifar-10-batches-py" in text and str(empty_dir) in text


# ------------------------------------------------------------------ IMDB
def _digest(result) -> tuple[str, int, int]:
    (x, y), (xt, yt) = result
    blob = json.dumps([[list(s) for s in x], y.tolist(), [list(s) for s in xt], yt.tolist()])
    return hashlib.sha256(blob.encode()).hexdigest()[:16], len(x), len(xt)


# sha256 prefixes of Keras 3.15.1's own keras.datasets.imdb.load_data(**kwargs) output on the shared imdb.npz
KERAS_IMDB = [
    ({}, ("de5bab29fbdce53d", 5000, 1000)),
    ({"num_words": 100}, ("a6036b84754ded5b", 5000, 1000)),
    ({"num_words": 100, "skip_top": 10}, ("a0f26563961b4a05", 5000, 1000)),
    ({"maxlen": 80}, ("30b15c45bd96464f", 353, 85)),
    ({"maxlen": 150, "num_words": 200, "oov_char": None}, ("6d7896d905df1d6c", 1835, 385)),
    ({"start_char": None}, ("364700972f75a65b", 5000, 1000)),
    ({"start_char": None, "index_from": 0}, ("49473e3ce6718989", 5000, 1000)),
    ({"index_from": 5, "start_char": 4, "oov_char": 3, "num_words": 50, "skip_top": 5, "seed": 7},
     ("a99b411563bb2b95", 5000, 1000)),
    ({"num_words": 1000}, ("69a2bd70e9490371", 5000, 1000)),
    ({"skip_top": 3}, ("b172a7c372c4fd32", 5000, 1000)),
]


@pytest.mark.parametrize("kwargs,expected", KERAS_IMDB, ids=[str(k) for k, _ in KERAS_IMDB])
@pytest.mark.filterwarnings("ignore::polykeras.datasets.DatasetSubsetWarning")
def test_imdb_matches_keras(shared, kwargs, expected):
    assert _digest(imdb.load_data(**kwargs)) == expected


@pytest.mark.filterwarnings("ignore::polykeras.datasets.DatasetSubsetWarning")
def test_imdb_parameters(shared):
    (x, y), (xt, yt) = imdb.load_data()
    assert x.dtype == xt.dtype == object and x.shape == (5000,) and xt.shape == (1000,)
    assert y.dtype == np.int64 and set(y.tolist()) == set(yt.tolist()) == {0, 1}
    assert x[0][:12] == [1, 207, 77, 2, 34, 14, 22, 18, 6, 137, 11, 173] and y[:6].tolist() == [1, 1, 0, 1, 0, 1]
    assert all(type(s) is list and s[0] == 1 for s in x)
    # num_words=None means max index (500 here), and `w < num_words` turns that index into OOV
    assert max(max(s) for s in x) == 499 and max(max(s) for s in xt) == 499
    (x, _), _ = imdb.load_data(num_words=100)
    assert max(max(s) for s in x) == 99 and any(2 in s for s in x)
    (x, _), _ = imdb.load_data(skip_top=10)  # skip_top also hits start_char (1 < 10)
    assert all(s[0] == 2 and not any(2 < w < 10 for w in s) for s in x)
    (x, y), (xt, _) = imdb.load_data(maxlen=100, num_words=500)
    (xa, ya), (xta, _) = imdb.load_data(num_words=500)
    kept = [i for i, s in enumerate(xa) if len(s) < 100]  # `len < maxlen`, start char included
    assert [list(s) for s in x] == [xa[i] for i in kept] and y.tolist() == ya[kept].tolist()
    assert len(xt) == sum(len(s) < 100 for s in xta)
    (x, _), _ = imdb.load_data(num_words=50, oov_char=None)
    assert all(s[0] == 1 and 2 not in s and max(s) < 50 for s in x)
    (x, y), (xt, yt) = imdb.load_data(start_char=None, index_from=0, num_words=10_000, seed=3, unused_kwarg=1)
    with np.load(shared / "imdb.npz", allow_pickle=True) as raw:  # trusted file: the test's own oracle
        pairs = {(tuple(s), int(label)) for s, label in zip(raw["x_train"], raw["y_train"])}
    assert {(tuple(s), int(label)) for s, label in zip(x, y)} == pairs  # a shuffle keeping x/y pairs
    with pytest.raises(ValueError, match="maxlen"):
        imdb.load_data(maxlen=5)


def test_imdb_word_index(empty_dir):
    with pytest.raises(DatasetNotFoundError, match="imdb_word_index.json") as info:
        imdb.get_word_index()
    assert "bfafd718b763782e994055a2d397834f" in str(info.value)
    (empty_dir / "imdb_word_index.json").write_text(json.dumps({"the": 1, "and": 2}))
    with pytest.warns(DatasetSubsetWarning, match="imdb_word_index.json"):
        assert imdb.get_word_index() == {"the": 1, "and": 2}


def test_offline_message(empty_dir, tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        imdb.load_data()
    error = info.value
    assert isinstance(error, OSError) and isinstance(error, FileNotFoundError)
    text = str(error)
    assert "imdb.npz" in text and "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f" in text
    assert str(empty_dir) in text and str(tmp_path / "keras_home" / "datasets") in text
    assert "POLYKERAS_DATA_DIR" in text and "Connection refused" in text and "place it" in text
    with pytest.raises(DatasetNotFoundError, match="train-labels-idx1-ubyte.gz"):
        fashion_mnist.load_data()
    assert _leftovers(empty_dir) == []


# ------------------------------------------------------------------ corrupt and malicious files
def _copy_into(d: Path, rel: str, data: bytes) -> Path:
    p = d / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_corrupt_files(shared, empty_dir, monkeypatch):
    monkeypatch.setenv("POLYKERAS_DATA_DIR", str(empty_dir))
    mn = (shared / "mnist.npz").read_bytes()
    _copy_into(empty_dir, "mnist.npz", mn[: len(mn) // 2])
    with pytest.raises(DatasetCorruptError, match=r"mnist\.npz is corrupt.*Delete it"):
        mnist.load_data()
    flipped = bytearray(mn)
    flipped[len(mn) // 2] ^= 0xFF  # inside a compressed member: CRC / zlib error
    _copy_into(empty_dir, "mnist.npz", bytes(flipped))
    with pytest.raises(DatasetCorruptError, match="mnist.npz"):
        mnist.load_data()
    np.savez(empty_dir / "mnist.npz", x_train=np.zeros((3, 28, 27), np.uint8), y_train=np.zeros(3, np.uint8),
             x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.uint8))
    with pytest.raises(DatasetCorruptError, match=r"x_train is uint8 \(3, 28, 27\)"):
        mnist.load_data()
    np.savez(empty_dir / "mnist.npz", x_train=np.array([[1], [2, 3]], dtype=object))
    with pytest.raises(DatasetCorruptError, match="object array"):
        mnist.load_data()
    gz = (shared / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    for rel in fashion_mnist.FILES.values():
        _copy_into(empty_dir, f"fashion-mnist/{rel}", (shared / "fashion-mnist" / rel).read_bytes())
    _copy_into(empty_dir, "fashion-mnist/t10k-labels-idx1-ubyte.gz", gz[: len(gz) - 100])
    with pytest.raises(DatasetCorruptError, match="t10k-labels-idx1-ubyte.gz"):
        fashion_mnist.load_data()
    _copy_into(empty_dir, "fashion-mnist/t10k-labels-idx1-ubyte.gz", gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8))
    with pytest.raises(DatasetCorruptError, match="header"):
        fashion_mnist.load_data()
    for b in cifar10.BATCHES:
        _copy_into(empty_dir, f"cifar-10-batches-py/{b}", (shared / "cifar-10-batches-py" / b).read_bytes())
    batch = (shared / "cifar-10-batches-py" / "data_batch_2").read_bytes()
    _copy_into(empty_dir, "cifar-10-batches-py/data_batch_2", batch[: len(batch) // 3])
    with pytest.raises(DatasetCorruptError, match="data_batch_2"):
        cifar10.load_data()
    (empty_dir / "cifar-10-batches-py" / "data_batch_2").unlink()
    with pytest.raises(DatasetCorruptError, match="lacks data_batch_2"):
        cifar10.load_data()
    _copy_into(empty_dir, "imdb.npz", b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetCorruptError, match="imdb.npz"):
        imdb.load_data()


class _Touch:
    """Unpickling this would create ``path`` -- if the unpickler let it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_malicious_pickles_do_not_run(empty_dir, tmp_path):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([[1, 2], _Touch(marker)], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(empty_dir / "imdb.npz", "w") as z:
        z.writestr("x_train.npy", buf.getvalue())
    with pytest.raises(DatasetCorruptError, match="refusing to load global"):
        imdb.load_data()
    for b in cifar10.BATCHES:
        _copy_into(empty_dir, f"cifar-10-batches-py/{b}", pickle.dumps({b"data": _Touch(marker)}, protocol=2))
    with pytest.raises(DatasetCorruptError, match="refusing"):
        cifar10.load_data()
    assert not marker.exists()


# ------------------------------------------------------------------ downloads (real HTTP on 127.0.0.1)
def test_download_verified(server, empty_dir, monkeypatch, capfd):
    _, root = server
    blob = _fake_mnist(root / "mnist.npz")
    monkeypatch.setitem(_files.CHECKSUMS, "mnist.npz", (_sha256(blob),))
    target = empty_dir / "sub"  # created on demand
    monkeypatch.setenv("POLYKERAS_DATA_DIR", str(target))

    def no_hashing(*args):
        raise AssertionError("a just-verified download must not be hashed again")

    monkeypatch.setattr(_files, "_compute", no_hashing)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        (x, y), (xt, yt) = mnist.load_data()
        (x2, _), _ = mnist.load_data()  # now found locally; digests remembered from the download
    assert not _subset_warnings(record)
    assert x.shape == (12, 28, 28) and xt.shape == (5, 28, 28) and np.array_equal(x, x2)
    assert y.shape == (12,) and yt.shape == (5,)
    assert (target / "mnist.npz").read_bytes() == blob and _leftovers(target) == ["mnist.npz"]
    err = capfd.readouterr().err
    assert "Downloading" in err and "mnist.npz" in err and "100%" in err


def test_download_checksum_mismatch(server, empty_dir, monkeypatch):
    _, root = server
    _fake_mnist(root / "mnist.npz")  # not the official file; the official checksum is kept
    with pytest.raises(DatasetChecksumError) as info:
        mnist.load_data()  # a mismatch is an error, not a reason to fall back to the bundled subset
    assert "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1" in str(info.value)
    assert "discarded" in str(info.value)
    assert _leftovers(empty_dir) == []


def test_download_interrupted(server, empty_dir, monkeypatch):
    httpd, root = server
    (root / "imdb.npz").write_bytes(os.urandom(300_000))
    httpd.truncate.add("imdb.npz")
    with pytest.raises(DatasetNotFoundError, match="interrupted: received 150,000 of 300,000 bytes"):
        imdb.load_data()
    assert _leftovers(empty_dir) == []
    _fake_mnist(root / "mnist.npz", n_train=2000)  # MNIST falls back to the bundled copy instead
    httpd.truncate.add("mnist.npz")
    with pytest.warns(DatasetSubsetWarning, match="bundled.*interrupted"):
        (x, _), _ = mnist.load_data()
    assert len(x) == 17_435 and _leftovers(empty_dir) == []


def test_download_http_error_and_ctrl_c(server, empty_dir, monkeypatch):
    _, root = server
    with pytest.raises(DatasetNotFoundError, match="404"):
        imdb.load_data()
    (root / "imdb.npz").write_bytes(os.urandom(200_000))

    def interrupt(self, n):
        raise KeyboardInterrupt

    monkeypatch.setattr(_fetch._Progress, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        imdb.load_data()
    assert _leftovers(empty_dir) == []


# ------------------------------------------------------------------ light core, Keras itself
def test_import_stays_light():
    code = ("import sys, polykeras.datasets; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'torch', 'jax', 'requests', 'tqdm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_same_as_keras(shared, monkeypatch):
    keras_datasets = pytest.importorskip("keras.src.datasets", reason="keras is not installed")
    from keras.src.datasets import fashion_mnist as k_fashion, imdb as k_imdb, mnist as k_mnist

    def get_file(fname=None, origin=None, cache_subdir="datasets", **kwargs):
        sub = "fashion-mnist" if cache_subdir.endswith("fashion-mnist") else ""
        return str(shared / sub / os.path.basename(origin))

    for module in (k_mnist, k_fashion, k_imdb):
        monkeypatch.setattr(module, "get_file", get_file)
    assert keras_datasets is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetSubsetWarning)
        for ours, theirs in ((mnist.load_data(), k_mnist.load_data()),
                             (fashion_mnist.load_data(), k_fashion.load_data()),
                             (imdb.load_data(num_words=300, maxlen=200), k_imdb.load_data(num_words=300, maxlen=200))):
            for a, b in zip((*ours[0], *ours[1]), (*theirs[0], *theirs[1])):
                assert a.dtype == b.dtype and a.shape == b.shape
                assert all(list(u) == list(v) for u, v in zip(a, b)) if a.dtype == object else np.array_equal(a, b)
