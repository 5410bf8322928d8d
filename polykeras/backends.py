"""Backend discovery and selection.

Backends come from plugins (:mod:`polykeras.plugins`) as :class:`BackendInfo`
descriptors: cheap to list -- whether the framework is installed is checked
with ``importlib.util.find_spec``, never by importing it -- and turned into a
:class:`~polykeras.program.Backend` only when used.

Selection: ``POLYKERAS_BACKEND`` (default ``numpy``), ``POLYKERAS_DEVICE``
(default: the backend's first, i.e. best, device), ``POLYKERAS_FLOATX``; or
:func:`set_backend` / ``compile(backend=...)`` in code. The name ``auto`` picks, per
model, the fastest candidate by a timed probe (:mod:`polykeras.auto_backend`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Callable

from polykeras import backend as _keras_backend
from polykeras import plugins

DEFAULT_BACKEND = "numpy"
AUTO = "auto"  # the fastest candidate for each model, timed (polykeras.auto_backend)

#: First-party backends and the pip extra that provides each: used to tell a
#: user what to install when a backend is missing.
FIRST_PARTY_EXTRAS = {
    "numpy": None, "torch": "torch", "jax": "jax", "keras": "keras", "keras-jax": "keras,jax",
    "keras-torch": "keras,torch", "keras-tensorflow": "tensorflow",
}


#: Said once wherever a polykeras extra is suggested: the constraints file exists in a checkout only.
CHECKOUT_NOTE = "in a polykeras checkout, add -c constraints.txt, which pins the CPU wheels"


class BackendNotFoundError(LookupError):
    """An unknown backend name, or one whose framework is not installed."""


class DeviceNotAvailableError(ValueError):
    """A device the backend cannot use on this machine."""


def _resolve(target: str | Callable) -> Callable:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class BackendInfo:
    """A plugin's declaration of one backend (returned by ``polykeras_backends``).

    ``factory``, ``devices`` and ``version`` may be ``"module:attr"`` strings
    so that the framework is imported only when they are used.
    """

    name: str
    factory: str | Callable  # (device, dtype) -> Backend
    requires: tuple[str, ...] = ()  # import names that must be installed
    extra: str | None = None  # pip extra, e.g. "torch" for pip install 'polykeras[torch]'
    aliases: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ("float32", "float64")
    devices: str | Callable[[], list[str]] | None = None  # default: ["cpu"]
    version: str | Callable[[], str] | None = None
    summary: str = ""
    layer_kinds: frozenset[str] = field(default_factory=frozenset)
    plugin: str = ""
    #: Whether ``backend="auto"`` probes it unless ``POLYKERAS_AUTO_CANDIDATES`` says otherwise: say
    #: ``False`` for a backend costly to start (the Keras backends' worker processes).
    auto_candidate: bool = True
    #: ``"module:attr"`` of ``(MetricSpec) -> (y, p, sample_weight) -> statistics`` on NumPy arrays
    #: (:mod:`polykeras.metrics.statistics`): the code metric objects run when used by hand
    #: (``update_state``, :mod:`polykeras.metrics.eager`). The NumPy reference declares it.
    eager_metrics: str | Callable | None = None

    def missing(self) -> list[str]:
        """The required modules that are not installed (checked without importing)."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    @property
    def installed(self) -> bool:
        return not self.missing()

    def available_devices(self) -> list[str]:
        if self.devices is None:
            return ["cpu"]
        return list(_resolve(self.devices)())

    def framework_version(self) -> str | None:
        return None if self.version is None else str(_resolve(self.version)())

    def install_hint(self, note: bool = False) -> str:
        """The pip command that installs what is missing; ``note``: with :data:`CHECKOUT_NOTE` for an extra."""
        if self.extra:
            return f"pip install 'polykeras[{self.extra}]'" + (f" ({CHECKOUT_NOTE})" if note else "")
        return f"pip install {' '.join(self.missing())}"

    def create(self, device: str | None = None, dtype: str | None = None):
        missing = self.missing()
        if missing:
            raise BackendNotFoundError(
                f"backend {self.name!r} needs {', '.join(missing)}, which is not installed; install it with: "
                f"{self.install_hint(note=True)}"
            )
        dtype = dtype or _keras_backend.floatx()
        if dtype not in self.dtypes:
            raise ValueError(f"backend {self.name!r} supports dtypes {', '.join(self.dtypes)}, not {dtype!r}")
        devices = self.available_devices()
        device = device or os.environ.get("POLYKERAS_DEVICE") or devices[0]
        if _device_type(device) not in {_device_type(d) for d in devices}:
            raise DeviceNotAvailableError(
                f"backend {self.name!r} has no device {device!r} on this machine; available: {', '.join(devices)}"
            )
        return _resolve(self.factory)(device, dtype)


def _device_type(device: str) -> str:
    return device.split(":")[0]


def backend_infos() -> dict[str, BackendInfo]:
    """Every declared backend by name (aliases not included)."""
    return {info.name: info for info in plugins.backend_infos()}


def find_backend(name: str) -> BackendInfo:
    """The descriptor for ``name`` (or an alias), or a :class:`BackendNotFoundError`
    that lists what is installed and how to get the rest."""
    if name == AUTO:
        raise BackendNotFoundError("backend 'auto' is chosen per model, by timing its steps: use it in "
                                   "model.compile(backend='auto') or POLYKERAS_BACKEND=auto; here name one backend "
                                   "(`polykeras backends` lists them)")
    for info in plugins.backend_infos():
        if name == info.name or name in info.aliases:
            return info
    raise BackendNotFoundError(_unknown_backend_message(name))


def _unknown_backend_message(name: str) -> str:
    infos = plugins.backend_infos()
    installed = [i.name for i in infos if i.installed]
    lines = [f"unknown backend {name!r}. Installed backends: {', '.join(installed) or 'none'}."]
    if name in FIRST_PARTY_EXTRAS and FIRST_PARTY_EXTRAS[name]:
        lines.append(f"{name!r} comes with: pip install 'polykeras[{FIRST_PARTY_EXTRAS[name]}]' ({CHECKOUT_NOTE})")
    absent = [i for i in infos if not i.installed]
    if absent:
        lines.append("Declared but not installed: " + ", ".join(f"{i.name} ({i.install_hint()})" for i in absent))
        if any(i.extra for i in absent):
            lines.append(f"({CHECKOUT_NOTE})")
    for failure in plugins.load_failures():
        lines.append(f"Plugin {failure.name!r} ({failure.target}) failed to load: {failure.error}")
    return "\n".join(lines)


_selected: str | None = None
_instances: dict[tuple[str, str | None, str], object] = {}


def selected_backend_name() -> str:
    return _selected or os.environ.get("POLYKERAS_BACKEND") or DEFAULT_BACKEND


def set_backend(name: str) -> None:
    """Choose the backend that ``compile`` uses from now on in this process
    (models compiled earlier keep theirs); ``"auto"``: the fastest for each model."""
    global _selected
    if name != AUTO:
        find_backend(name)  # fail now, with the helpful message, on a typo
    _selected = name


def get_backend(name: str | None = None, device: str | None = None, dtype: str | None = None):
    """A :class:`~polykeras.program.Backend` for ``name`` (default: the selected
    one) on ``device`` in ``dtype`` (default: ``floatx()``), cached per process."""
    info = find_backend(name or selected_backend_name())
    dtype = dtype or _keras_backend.floatx()
    key = (info.name, device or os.environ.get("POLYKERAS_DEVICE"), dtype)
    if key not in _instances:
        _instances[key] = info.create(device, dtype)
    return _instances[key]
