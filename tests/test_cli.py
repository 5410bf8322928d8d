"""The polykeras command: backends, train, commands from plugins, and its one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from polykeras import plugins
from polykeras.cli import main
from polykeras.hookspecs import hookimpl


def test_backends_lists_numpy(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("numpy"))
    assert "installed" in line and "cpu" in line and "float64" in line


@pytest.mark.filterwarnings("ignore::polykeras.datasets.DatasetSubsetWarning")
def test_train_writes_history_model_and_curves(real_data, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "mnist-mlp", "--epochs", "2", "--limit", "1024", "--verbose", "0", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "note:" in text and "17,435" in text  # the subset is named, not hidden
    assert "test loss:" in text and "ms/step" in text and "samples/s" in text
    history = json.loads((out / "history.json").read_text())
    assert len(history["history"]["loss"]) == 2 and history["summary"]["test_accuracy"] > 0.5
    assert (out / "model.keras").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0
    import polykeras

    model = polykeras.models.load_model(out / "model.keras")
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("args,message", [
    (["train", "mnist-mlpp"], "unknown workload 'mnist-mlpp'; choose one of: mnist-mlp"),
    (["train", "mnist-mlp", "--backend", "nope"], "unknown backend 'nope'"),
    (["train", "mnist-mlp", "--device", "cuda"], "no device 'cuda'"),
    (["train", "mnist-mlp", "--backend", "numpy", "--replicas", "2"],
     "--replicas needs a backend that trains data-parallel (torch, jax); backend 'numpy' does not"),
    (["train", "mnist-mlp", "--backend", "torch", "--replicas", "3", "--batch-size", "64"],
     "batch size 64 does not divide by --replicas 3"),
])
def test_bad_arguments_exit_2_with_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def _train_history(out, *args):
    """``polykeras train`` as a user runs it (its own process: torchrun and XLA_FLAGS need one)."""
    command = [sys.executable, "-m", "polykeras", "train", "mnist-mlp", "--limit", "600", "--epochs", "2",
               "--batch-size", "64", "--dtype", "float64", "--verbose", "0", "--out", str(out), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, json.loads((out / "history.json").read_text())["history"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_train_with_replicas_trains_like_one_device(real_data, tmp_path, backend):
    """``--replicas 2``: torch starts two processes under torchrun, jax makes two host devices; the float64
    history equals one device's (the L4 bound, 1e-10), the sets are cut to even counts, rank 0 alone speaks."""
    text, two = _train_history(tmp_path / "two", "--backend", backend, "--replicas", "2")
    _, one = _train_history(tmp_path / "one", "--backend", backend)
    assert text.count("wrote history.json") == 1 and "540 training + 60 validation" in text
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-10)


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "polykeras", "backends"], capture_output=True, text=True)
    assert result.returncode == 0 and "numpy" in result.stdout


# -- commands from plugins (the polykeras_cli_commands hook) ---------------------------------------
class _Hello:
    @hookimpl
    def polykeras_cli_commands(self, subparsers):
        hello = subparsers.add_parser("hello", help="greet someone")
        hello.add_argument("--name", default="world")
        hello.set_defaults(handler=lambda args: print(f"hello {args.name}") or 3)


class _Broken:
    @hookimpl
    def polykeras_cli_commands(self, subparsers):
        subparsers.add_parser("half-made")
        raise RuntimeError("boom")


class _Squatter:
    @hookimpl
    def polykeras_cli_commands(self, subparsers):
        subparsers.add_parser("train").set_defaults(handler=lambda args: 0)


@pytest.fixture
def command_plugins():
    for plugin, name in ((_Hello(), "hello"), (_Broken(), "broken"), (_Squatter(), "squatter")):
        plugins.register(plugin, name=name)
    yield
    for name in ("hello", "broken", "squatter"):
        plugins.unregister(name)


def test_plugins_add_commands_and_a_broken_one_breaks_only_itself(command_plugins, capsys):
    assert main(["hello", "--name", "pk"]) == 3
    captured = capsys.readouterr()
    assert captured.out == "hello pk\n"
    assert "plugin 'broken' could not add its commands: RuntimeError: boom" in captured.err
    assert "plugin 'squatter' could not add its commands" in captured.err and "train" in captured.err
    assert main(["train", "mnist-mlpp"]) == 2  # still the core's train
    assert "unknown workload 'mnist-mlpp'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["half-made"])  # dropped with the rest of the broken plugin's commands
    assert exc.value.code == 2


@pytest.fixture
def without_conformance_plugin():
    plugin = plugins.manager().get_plugin("conformance")
    assert plugin is not None, "the conformance suite's entry point is missing: pip install --no-deps -e ."
    plugins.unregister("conformance")
    yield
    plugins.register(plugin, name="conformance")


def test_conformance_without_its_plugin_says_what_to_install(without_conformance_plugin, capsys):
    assert main(["conformance", "--backends", "numpy", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'polykeras[conformance]'" in err and len(err.strip().splitlines()) == 1


def test_loading_the_plugins_imports_no_suite_or_framework():
    code = ("import sys; from polykeras.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'jax', 'tensorflow', 'keras', 'h5py', 'matplotlib', 'hypothesis', "
            "'polykeras_conformance.runner') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr
