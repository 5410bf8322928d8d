"""The ``polykeras`` command: ``backends`` and ``train``, and the commands
plugins add through the ``polykeras_cli_commands`` hook (the conformance
suite's ``conformance``, for one).

Bad arguments exit with status 2 and a one-line reason that lists the valid
choices; nothing is printed as a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from polykeras import auto_backend_cli
from polykeras.callbacks import Callback


#: Commands that first-party plugins add, and the extra that installs each: when one is missing,
#: ``polykeras NAME`` says what to install rather than argparse's "invalid choice".
PLUGIN_COMMANDS = {"conformance": "conformance"}


class UsageError(Exception):
    """A mistake in the command line, reported in one line with exit status 2
    (raise it from a plugin's command too)."""


def _backends(args) -> int:
    from polykeras.backends import CHECKOUT_NOTE, FIRST_PARTY_EXTRAS, backend_infos
    from polykeras.plugins import load_failures

    if getattr(args, "probe", None):
        return auto_backend_cli.probe_file(args)

    infos = backend_infos()
    rows = [("backend", "status", "version", "devices", "dtypes", "plugin")]
    for info in infos.values():
        if info.installed:
            try:
                version = info.framework_version() or "-"
                devices = ", ".join(info.available_devices())
                status = "installed"
            except Exception as exc:  # a framework that is present but broken
                version, devices, status = "-", "-", f"broken: {type(exc).__name__}: {exc}"
        else:
            version, devices, status = "-", "-", f"missing {', '.join(info.missing())}: {info.install_hint()}"
        rows.append((info.name, status, version, devices, ", ".join(info.dtypes), info.plugin or "-"))
    for name, extra in FIRST_PARTY_EXTRAS.items():
        if name not in infos and extra:
            rows.append((name, f"not installed: pip install 'polykeras[{extra}]'", "-", "-", "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if any("polykeras[" in row[1] for row in rows):
        print(f"({CHECKOUT_NOTE})")
    for failure in load_failures():
        print(f"plugin {failure.name!r} ({failure.target}) failed to load: {failure.error}")
    return 0


def check_choice(value, choices, what: str) -> None:
    """Raise a :class:`UsageError` naming the choices when ``value`` (unless None) is not one of them."""
    if value is not None and value not in choices:
        raise UsageError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


def _train(args) -> int:
    import polykeras
    from polykeras import model_data, workloads
    from polykeras.backends import (AUTO, BackendNotFoundError, DeviceNotAvailableError, get_backend,
                                    selected_backend_name)

    known = workloads.workloads()
    check_choice(args.workload, list(known), "workload")
    workload = known[args.workload]
    chief = True
    if args.replicas:  # data-parallel (polykeras.replicas): checked, launched or joined before a backend exists
        from polykeras import replicas

        name = args.backend or selected_backend_name()
        try:
            replicas.check(args.replicas, name, args.batch_size or workload.batch_size)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if name == "torch" and not replicas.launched():
            return replicas.launch(args.replicas, args.argv)
        if name == "jax":
            replicas.prepare_host_devices(args.replicas, args.device)
        replicas.join(args.replicas, name, args.device)
        chief = polykeras.distribution.is_chief()
    try:
        auto = (args.backend or selected_backend_name()) == AUTO  # chosen by a probe at the first fit
        backend = None if auto else get_backend(args.backend, args.device, args.dtype)
    except (BackendNotFoundError, DeviceNotAvailableError, ValueError) as exc:
        raise UsageError(str(exc).splitlines()[0] + (" (run 'polykeras backends' for details)"
                                                   if isinstance(exc, BackendNotFoundError) else "")) from None
    if args.seed is not None:
        polykeras.utils.set_random_seed(args.seed)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", polykeras.datasets.DatasetSubsetWarning)
        (x, y), (x_test, y_test) = workload.load()
    say = print if chief else (lambda *_, **__: None)  # under torchrun, rank 0 speaks
    for w in caught:
        say(f"note: {w.message}")
    if args.limit:
        x, y = model_data.rows(x, 0, args.limit), y[:args.limit]
    validation = {"validation_split": args.validation_split}
    counted = f"{len(y):,} training"
    if args.replicas:  # every batch divides by the replica count: the sets are cut to multiples of it
        split = int(len(y) * (1 - args.validation_split))  # Keras's rule: the last samples validate
        keep, held = replicas.cut(split, args.replicas), replicas.cut(len(y) - split, args.replicas)
        validation = {"validation_data": (model_data.rows(x, split, split + held), y[split:split + held])}
        dropped = len(y) - keep - held + len(y_test) - replicas.cut(len(y_test), args.replicas)
        x, y = model_data.rows(x, 0, keep), y[:keep]
        counted = f"{keep:,} training + {held:,} validation"
        x_test, y_test = model_data.rows(x_test, 0, replicas.cut(len(y_test), args.replicas)), \
            y_test[:replicas.cut(len(y_test), args.replicas)]
        if dropped:
            say(f"note: {dropped} sample(s) left out so that every batch divides by --replicas {args.replicas}")

    model = workload.build()
    if auto:
        workload.compile(model, backend=AUTO, device=args.device, dtype=args.dtype)
    else:
        workload.compile(model, backend=backend.name, device=backend.device, dtype=backend.dtype)
    epochs = args.epochs or workload.epochs
    batch_size = args.batch_size or workload.batch_size
    say(f"{workload.name}: {workload.description}")
    say(f"backend {'auto (chosen at the first step)' if auto else backend.describe()}; {counted} / "
          f"{len(y_test):,} test samples; {epochs} epoch(s) of batch {batch_size}")
    timer = EpochTimer()
    start = time.perf_counter()
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=args.verbose, callbacks=[timer],
                        **validation)
    train_time = time.perf_counter() - start
    backend = model.backend
    test = model.evaluate(x_test, y_test, batch_size=batch_size, verbose=0, return_dict=True)

    steps = sum(timer.steps)
    ms_per_step = 1000 * sum(timer.seconds) / max(steps, 1)
    summary = {"workload": workload.name, "backend": backend.name, "device": backend.device, "dtype": backend.dtype,
               "epochs": epochs, "batch_size": batch_size, "train_samples": int(len(y)),
               "test_samples": int(len(y_test)), "train_seconds": round(train_time, 3),
               "ms_per_step": round(ms_per_step, 3),
               "samples_per_second": round(batch_size * 1000 / ms_per_step, 1) if ms_per_step else None,
               **{f"test_{k}": v for k, v in test.items()}}
    say("test " + " - ".join(f"{k}: {v:.4f}" for k, v in test.items())
          + f" | {train_time:.1f}s training, {ms_per_step:.2f} ms/step, {summary['samples_per_second']} samples/s")

    if not chief:  # only rank 0 writes (polykeras.distribution)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "history.json").write_text(json.dumps({"history": history.history, "epoch": history.epoch,
                                                  "summary": summary}, indent=1))
    try:
        model.save(out / "model.keras")
        written = ["history.json", "model.keras"]
    except NotImplementedError as exc:  # custom layers and ops have no Keras 3 form yet: keep polykeras's own
        model.save(out / "model.polykeras")
        written = ["history.json", "model.polykeras"]
        print(f"model.keras not written: {exc}")
    if _plot_curves(history.history, out / "curves.png", f"{workload.name} on {backend.describe()}"):
        written.append("curves.png")
    print(f"wrote {', '.join(written)} to {out}")
    return 0


class EpochTimer(Callback):
    """Times the training part of each epoch (validation excluded)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self.steps: list[int] = []
        self._start = self._stop = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._stop = time.perf_counter(), None

    def on_test_begin(self, logs=None):  # validation starts: the training part is over
        self._stop = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append((self._stop or time.perf_counter()) - self._start)
        self.steps.append(self.params.get("steps") or 0)


def _plot_curves(history: dict, path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed, so no curves.png (pip install 'polykeras[plots]')")
        return False
    metrics = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, name in zip(axes[0], metrics):
        epochs = range(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def build_parser() -> argparse.ArgumentParser:
    """The ``polykeras`` parser: the core's commands and those plugins add."""
    return _build_parser()[0]


def _build_parser():
    """The parser, and the plugins that failed to add their commands."""
    from polykeras import plugins

    parser = argparse.ArgumentParser(prog="polykeras", description="Keras models on any backend.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    backends = sub.add_parser("backends", help="list installed backends, versions, devices and dtypes; with "
                                               "--probe MODEL_FILE, time backend='auto''s candidates on a model")
    backends.set_defaults(handler=_backends)
    auto_backend_cli.add_arguments(backends)
    train = sub.add_parser("train", help="train a named workload and report test accuracy and speed")
    train.set_defaults(handler=_train)
    train.add_argument("workload", help="e.g. mnist-mlp, mnist-cnn, fashion-mlp, cifar-cnn, imdb-lstm")
    train.add_argument("--backend", help="backend name, or auto: the fastest, timed (default: $POLYKERAS_BACKEND or numpy)")
    train.add_argument("--device", help="device, e.g. cpu or cuda (default: the backend's best)")
    train.add_argument("--dtype", choices=["float32", "float64"], help="compute dtype (default: floatx)")
    train.add_argument("--epochs", type=int, help="epochs (default: the workload's)")
    train.add_argument("--batch-size", type=int, help="batch size (default: the workload's)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--limit", type=int, help="train on the first N samples only")
    train.add_argument("--validation-split", type=float, default=0.1, help="fraction held out (default 0.1)")
    train.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="progress output (default 1)")
    train.add_argument("--replicas", type=int,
                       help="train data-parallel on N replicas: torch starts N processes (torchrun), jax uses N devices "
                            "(N host devices on a CPU); the batch size is the global one")
    train.add_argument("--out", default="out", help="folder for history.json, model.keras (Keras 3's format), curves.png")
    failures = plugins.add_cli_commands(sub)
    for name, extra in PLUGIN_COMMANDS.items():
        if name not in sub.choices:  # its plugin is not installed, or failed: say what to install
            missing = sub.add_parser(name, help=f"(not installed: pip install 'polykeras[{extra}]')", add_help=False,
                                     prefix_chars="\0")
            missing.add_argument("ignored", nargs=argparse.REMAINDER)
            missing.set_defaults(handler=_not_installed(name, extra, failures))
    return parser, failures


def _not_installed(name: str, extra: str, failures):
    def handler(args) -> int:
        from polykeras.backends import CHECKOUT_NOTE
        from polykeras.plugins import load_failures

        broken = "".join(f"; plugin {f.name!r} ({f.target}) failed: {f.error}" for f in load_failures() + failures)
        raise UsageError(f"no installed plugin provides the {name!r} command{broken}; install it with: "
                         f"pip install 'polykeras[{extra}]' ({CHECKOUT_NOTE})")

    return handler


def main(argv: list[str] | None = None) -> int:
    parser, failures = _build_parser()
    for failure in failures:
        print(f"polykeras: plugin {failure.name!r} could not add its commands: {failure.error}", file=sys.stderr)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what --replicas relaunches under torchrun
    try:
        if not callable(getattr(args, "handler", None)):
            raise RuntimeError("the plugin that adds this command gave it no handler "
                               "(parser.set_defaults(handler=...))")
        return args.handler(args)
    except UsageError as exc:
        print(f"polykeras {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug:
            raise
        print(f"polykeras {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
