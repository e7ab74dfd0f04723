"""AE01's decoder output option: the seed's BN + ReLU, a sigmoid, or linear."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worker.ml import artifacts, models
from worker.ml.pretrain import assemble_stacked_ae, load_pretrained

OUTPUTS = ("bn_relu", "sigmoid", "linear")


def _images(n=4, seed=0):
    return np.random.default_rng(seed).random((n, 32, 32, 3)).astype("float32")


def _layer_names(model):
    return [layer.name for layer in models.decoder_of(model).layers]


@pytest.mark.parametrize("output", OUTPUTS)
def test_ae01_decoder_ends_as_asked_and_trains_a_step(output):
    ae01 = models.build_ae01(3, output)
    ending = {
        "bn_relu": ["Dense_AE01_2", "BN_AE01_2", "Relu_AE01_2"],
        "sigmoid": ["Dense_AE01_2", "Sigmoid_AE01_2"],
        "linear": ["Dense_AE01_2"],
    }[output]
    assert _layer_names(ae01)[1:] == ending
    bn_params = 4 * 3 if output == "bn_relu" else 0
    assert ae01.count_params() == 9 * 3 * 64 + 64 + 4 * 64 + 9 * 64 * 3 + 3 + bn_params
    ae01.compile(optimizer="adam", loss="mse")
    x = _images()
    assert np.isfinite(ae01.train_on_batch(x, x))
    out = np.asarray(ae01.predict_on_batch(x))
    if output == "sigmoid":
        assert out.min() > 0 and out.max() < 1
    if output == "bn_relu":
        assert out.min() >= 0


def test_only_ae01_has_an_output_option():
    with pytest.raises(ValueError, match="only AE01"):
        models.build_decoder("ae02", 3, "sigmoid")
    with pytest.raises(ValueError, match="decoder output"):
        models.build_decoder("ae01", 3, "tanh")
    # A pretrain passes its setting to every stage; AE02 and AE03 keep BN + ReLU.
    ae02 = models.build_autoencoder("ae02", 3, "linear")
    assert _layer_names(ae02)[-2:] == ["BN_AE02_2", "Relu_AE02_2"]
    stacked = models.build_stacked_ae(3, "linear")
    names = {layer.name for layer in models.iter_weighted_layers(stacked)}
    assert "BN_AE01_2" not in names and {"BN_AE02_2", "BN_AE03_2", "Dense_AE01_2"} <= names


def _write_pretrain(folder, output, *, record_output=True, seed=0):
    """A pretrain folder by hand: random stage weights and the manifest fields it needs."""
    stages = {}
    for i, stage in enumerate(models.STAGES):
        autoencoder = models.build_autoencoder(stage, 3, output)
        rng = np.random.default_rng(seed + i)
        for layer in models.iter_weighted_layers(autoencoder):
            weights = [rng.normal(0, 0.1, w.shape).astype("float32") for w in layer.weights]
            layer.set_weights(weights)
        artifacts.save_model(autoencoder, folder, stage)
        stages[stage] = autoencoder
    manifest = {"kernel_sizes": [3, 3, 3], "trained_stages": list(models.STAGES)}
    if record_output:
        manifest["decoder_output"] = output
    (folder / "pretrain.json").write_text(json.dumps(manifest))
    return stages


@pytest.mark.parametrize("output", OUTPUTS)
def test_weights_round_trip_through_load_pretrained(output, tmp_path):
    saved = _write_pretrain(tmp_path, output)
    loaded = load_pretrained(tmp_path)
    x = _images()
    np.testing.assert_array_equal(
        np.asarray(loaded["ae01"].predict_on_batch(x)),
        np.asarray(saved["ae01"].predict_on_batch(x)),
    )
    stacked = assemble_stacked_ae(loaded, (3, 3, 3), output)
    rebuilt = assemble_stacked_ae(saved, (3, 3, 3), output)
    np.testing.assert_allclose(
        np.asarray(stacked.predict_on_batch(x)), np.asarray(rebuilt.predict_on_batch(x)), atol=1e-6
    )


def test_a_manifest_from_before_the_option_loads_the_seeds_decoder(tmp_path):
    _write_pretrain(tmp_path, "bn_relu", record_output=False)
    assert _layer_names(load_pretrained(tmp_path, ("ae01",))["ae01"])[-1] == "Relu_AE01_2"
