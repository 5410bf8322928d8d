"""Reading the dataset file formats without executing code from them.

* ``.npz``: each ``.npy`` member is read with ``allow_pickle=False``. Object arrays (IMDB's ragged
  sequences, which NumPy can only store as a pickle) are accepted only where the caller allows them,
  and are then unpickled by :class:`SafeUnpickler`, never by ``np.load(allow_pickle=True)``.
* CIFAR-10 batches (Python pickles of a dict of bytes, lists and one uint8 array): :class:`SafeUnpickler`.
* IDX gzip files (MNIST / Fashion-MNIST): parsed by hand, header checked.

:class:`SafeUnpickler` resolves no global but these: ``numpy.ndarray``, ``numpy.dtype`` and
``numpy[._]core.multiarray._reconstruct`` (what a pickled array consists of; the latter two are
wrapped to accept only plain ndarrays and plain dtypes), ``numpy[._]core.numeric._frombuffer`` (the
same at pickle protocol 5, wrapped likewise), and ``_codecs.encode`` restricted to
latin-1 (how Python 3 pickles ``bytes`` at protocol 2, as in re-pickled CIFAR batches). Anything else
(``os.system``, ``builtins.eval``...) raises, so a tampered file cannot run code; the worst it can do
is fail to load. Every failure becomes a :class:`DatasetCorruptError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import zipfile
import zlib

import numpy as np

from polykeras.datasets._files import DatasetCorruptError

_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's multiarray._reconstruct, whatever its module path
_MAX_MEMBER_BYTES = 1 << 32  # an .npy member declaring more than this and ...
_MAX_EXPANSION = 100  # ... compressing better than this is refused as a decompression bomb


def corrupt(path, detail: str) -> DatasetCorruptError:
    """The error for an unreadable dataset file."""
    return DatasetCorruptError(
        f"Dataset file {path} is corrupt or not in the expected format ({detail}). Delete it and load again "
        "to re-download it, or replace it with the official file.")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild NumPy arrays, dicts, lists, str/bytes and numbers, and nothing else."""

    def __init__(self, file, *, allow_object_arrays: bool = False, **kwargs):
        super().__init__(file, **kwargs)
        self.allow_object_arrays = allow_object_arrays

    def _reconstruct(self, subtype, shape, dtype):
        if subtype is not np.ndarray:
            raise pickle.UnpicklingError(f"refusing to build an array of type {subtype!r}")
        return _RECONSTRUCT(subtype, shape, dtype)

    def _dtype(self, spec, align=False, copy=False):
        if isinstance(spec, bytes):  # Python 2 pickles read with encoding="bytes"
            spec = spec.decode("ascii")
        if not isinstance(spec, str):
            raise pickle.UnpicklingError(f"refusing dtype spec {spec!r}")
        dtype = np.dtype(spec, bool(align), bool(copy))
        if dtype.hasobject and not self.allow_object_arrays:
            raise pickle.UnpicklingError("refusing an object array where plain numbers are expected")
        return dtype

    def _frombuffer(self, buf, dtype, shape, order="C"):  # how protocol 5 pickles an array
        if isinstance(buf, pickle.PickleBuffer):
            buf = buf.raw()
        if not isinstance(buf, (bytes, bytearray, memoryview)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise pickle.UnpicklingError("refusing _frombuffer arguments")
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)

    @staticmethod
    def _encode(text, encoding="utf-8"):
        if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
            raise pickle.UnpicklingError("refusing _codecs.encode other than str -> latin-1")
        return text.encode("latin-1")

    def find_class(self, module, name):
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): self._dtype,
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy.core.numeric", "_frombuffer"): self._frombuffer,
            ("numpy._core.numeric", "_frombuffer"): self._frombuffer,
            ("_codecs", "encode"): self._encode,
        }
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


_UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
                    AttributeError, UnicodeDecodeError, MemoryError, OverflowError)


def _read_npy(data: bytes, allow_object: bool) -> np.ndarray:
    fp = io.BytesIO(data)
    version = np.lib.format.read_magic(fp)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _fortran, dtype = read_header(fp)
    if not dtype.hasobject:
        fp.seek(0)
        return np.lib.format.read_array(fp, allow_pickle=False)
    if not allow_object:
        raise ValueError("member is a pickled object array, which this dataset never contains")
    array = SafeUnpickler(fp, allow_object_arrays=True).load()
    if not isinstance(array, np.ndarray) or array.shape != shape:
        raise ValueError(f"pickled member is not an array of shape {shape}")
    return array


def read_npz(path, keys, *, allow_object: bool = False) -> dict[str, np.ndarray]:
    """Read the arrays ``keys`` of the ``.npz`` at ``path`` (a zip holding only ``.npy`` members)."""
    if not zipfile.is_zipfile(path):
        raise corrupt(path, "not a zip archive: truncated, or not an .npz file")
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy") or "/" in info.filename:
                    raise ValueError(f"unexpected member {info.filename!r}")
                if info.file_size > _MAX_MEMBER_BYTES and info.file_size > _MAX_EXPANSION * info.compress_size:
                    raise ValueError(f"member {info.filename!r} declares {info.file_size:,} bytes (a zip bomb?)")
                arrays[info.filename[:-4]] = _read_npy(archive.read(info), allow_object)
    except (zipfile.BadZipFile, zlib.error, OSError) + _UNPICKLE_ERRORS as e:
        raise corrupt(path, f"{type(e).__name__}: {e}") from e
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise corrupt(path, f"missing arrays {missing}; it holds {sorted(arrays)}")
    return {k: arrays[k] for k in keys}


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """``(data uint8 (N, 3, 32, 32), labels (N,))`` from one CIFAR-10 python batch file."""
    try:
        with open(path, "rb") as f:
            batch = SafeUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise corrupt(path, f"{type(e).__name__}: {e}") from e
    except _UNPICKLE_ERRORS as e:
        raise corrupt(path, f"{type(e).__name__}: {e}") from e
    if not isinstance(batch, dict):
        raise corrupt(path, f"holds a {type(batch).__name__}, not a dict")
    batch = {k.decode("utf8") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise corrupt(path, "'data' is not a uint8 array of shape (N, 3072)")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise corrupt(path, f"'labels' is not a list of integers ({e})") from e
    if labels.shape != (len(data),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise corrupt(path, f"'labels' is not {len(data)} integers in 0..9")
    return data.reshape(len(data), 3, 32, 32), labels


def read_idx_gz(path, *, magic: int, item_shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """``(uint8 array, md5 of the decompressed content)`` from a gzipped IDX file (MNIST's format).

    ``magic`` is 2049 for labels and 2051 for images; ``item_shape`` the shape of one item.
    """
    ndim = 1 + len(item_shape)
    try:
        with gzip.open(path, "rb") as f:
            header = f.read(4 + 4 * ndim)
            if len(header) != 4 + 4 * ndim or int.from_bytes(header[:4], "big") != magic:
                raise ValueError(f"not an IDX file with magic number {magic}")
            dims = tuple(int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
            if dims[1:] != item_shape:
                raise ValueError(f"items of shape {dims[1:]}, expected {item_shape}")
            array = np.empty(dims, dtype=np.uint8)
            if f.readinto(memoryview(array).cast("B")) != array.size or f.read(1):
                raise ValueError(f"content does not match the header's shape {dims}")
    except (OSError, EOFError, ValueError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise corrupt(path, f"{type(e).__name__}: {e}") from e
    md5 = hashlib.md5(header)
    md5.update(memoryview(array).cast("B"))
    return array, md5.hexdigest()
