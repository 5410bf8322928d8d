"""polykeras.losses: Keras's names, aliases and classes resolve to the right kind and options,
and a loss's options survive serialisation, a model file and a trip through Keras 3 itself."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import polykeras as pk
from polykeras import layers, losses

NEW = {  # Keras's class, its function name (the kind), its default name
    "MeanAbsolutePercentageError": ("mean_absolute_percentage_error", "mean_absolute_percentage_error"),
    "MeanSquaredLogarithmicError": ("mean_squared_logarithmic_error", "mean_squared_logarithmic_error"),
    "Huber": ("huber", "huber_loss"), "LogCosh": ("log_cosh", "log_cosh"), "Hinge": ("hinge", "hinge"),
    "SquaredHinge": ("squared_hinge", "squared_hinge"), "KLDivergence": ("kl_divergence", "kl_divergence"),
    "Poisson": ("poisson", "poisson"), "CosineSimilarity": ("cosine_similarity", "cosine_similarity"),
}


@pytest.mark.parametrize("class_name", NEW)
def test_class_function_name_and_class_name_resolve_alike(class_name):
    kind, default_name = NEW[class_name]
    cls = getattr(losses, class_name)
    for identifier in (kind, class_name, cls, cls(), getattr(losses, kind), {"class_name": class_name, "config": {}}):
        loss = losses.get(identifier)
        assert type(loss) is cls and loss.kind == kind and loss.name == default_name, identifier
    assert kind in losses.KINDS


@pytest.mark.parametrize("alias, kind", [("kld", "kl_divergence"), ("KLD", "kl_divergence"),
                                         ("kullback_leibler_divergence", "kl_divergence"), ("logcosh", "log_cosh"),
                                         ("mape", "mean_absolute_percentage_error"),
                                         ("MAPE", "mean_absolute_percentage_error"),
                                         ("msle", "mean_squared_logarithmic_error"),
                                         ("MSLE", "mean_squared_logarithmic_error"), ("bce", "binary_crossentropy")])
def test_keras_aliases(alias, kind):
    assert losses.get(alias).kind == kind


def test_options_reach_the_spec_and_survive_serialize():
    huber = losses.Huber(delta=0.5)
    assert huber.to_spec() == {"kind": "huber", "config": {"delta": 0.5}}
    assert losses.CosineSimilarity().to_spec() == {"kind": "cosine_similarity", "config": {"axis": -1}}
    for loss in (huber, losses.CosineSimilarity(name="cos"), losses.KLDivergence(), losses.Hinge()):
        again = losses.get(losses.serialize(loss))
        assert type(again) is type(loss) and again.get_config() == loss.get_config()


def test_unknown_names_list_the_new_ones():
    with pytest.raises(ValueError, match="unknown loss 'hubber'.*huber.*kld"):
        losses.get("hubber")
    with pytest.raises(ValueError, match="positive number"):
        losses.get({"class_name": "Huber", "config": {"delta": 0}})


def _huber_model():
    pk.utils.set_random_seed(0)
    model = pk.Sequential([layers.Dense(3, input_shape=(4,))])
    model.compile(optimizer="sgd", loss=losses.Huber(delta=0.5), backend="numpy")
    return model


@pytest.mark.parametrize("name", ["m.keras", "m.polykeras"])
def test_huber_delta_survives_a_model_file(tmp_path, name):
    model = _huber_model()
    x, y = np.random.default_rng(0).normal(size=(8, 4)), np.random.default_rng(1).normal(size=(8, 3)) * 2
    model.save(tmp_path / name)
    loaded = pk.models.load_model(tmp_path / name)
    assert isinstance(loaded.loss, losses.Huber) and loaded.loss.config["delta"] == 0.5
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-12)
    if name.endswith(".keras"):
        with zipfile.ZipFile(tmp_path / name) as zf:
            loss = json.loads(zf.read("config.json"))["compile_config"]["loss"]
        assert loss["module"] == "keras.losses" and loss["class_name"] == "Huber" and loss["config"]["delta"] == 0.5


def test_keras_written_compile_configs_are_read(tmp_path):
    """Keras 3 writes a loss object as below -- and leaves Huber's ``delta`` out of its config (Keras's
    ``Huber.get_config`` returns only name and reduction), so Keras reloads it with delta 1, as we do."""
    from polykeras.saving import keras_read

    written = [({"module": "keras.losses", "class_name": "Huber", "registered_name": None,
                 "config": {"name": "huber_loss", "reduction": "sum_over_batch_size"}}, losses.Huber, {"delta": 1.0}),
               ({"module": "keras.losses", "class_name": "KLDivergence", "registered_name": None,
                 "config": {"name": "kl_divergence", "reduction": "sum_over_batch_size", "dtype": None}},
                losses.KLDivergence, {}),
               ("kld", losses.KLDivergence, {}), ("logcosh", losses.LogCosh, {}), ("poisson", losses.Poisson, {})]
    for loss, cls, config in written:
        model = pk.Sequential([layers.Dense(3, input_shape=(4,))])
        keras_read._compile(model, {"optimizer": "sgd", "loss": loss, "metrics": None}, tmp_path / "m.keras")
        assert type(model.loss) is cls and model.loss.config == config, loss


KERAS_SIDE = """
import os, sys
os.environ["KERAS_BACKEND"] = sys.argv[2]
import keras
model = keras.saving.load_model(sys.argv[1])
print(type(model.loss).__name__, model.loss._fn_kwargs)
"""


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="keras is not installed")
def test_keras_opens_a_polykeras_huber_with_its_delta(tmp_path):
    """Keras 3 itself (a subprocess: this one stays Keras-free) compiles the file's Huber with delta 0.5."""
    from polykeras import backends

    infos = backends.backend_infos()
    keras_backend = next((b for b in ("jax", "torch", "tensorflow") if infos[f"keras-{b}"].installed), None)
    if keras_backend is None:
        pytest.skip("no Keras 3 backend framework is installed")
    _huber_model().save(tmp_path / "m.keras")
    script = tmp_path / "keras_side.py"
    script.write_text(KERAS_SIDE)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "m.keras"), keras_backend],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "Huber {'delta': 0.5}"
