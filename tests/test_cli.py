"""The polykeras command: backends, train, and its one-line errors."""

import json
import subprocess
import sys

import pytest

from polykeras.cli import main


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
])
def test_bad_arguments_exit_2_with_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "polykeras", "backends"], capture_output=True, text=True)
    assert result.returncode == 0 and "numpy" in result.stdout
