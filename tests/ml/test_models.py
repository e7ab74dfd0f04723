"""The seed's six models: shapes, parameter counts, layer names, weight transfer by name."""

from __future__ import annotations

import numpy as np
import pytest

from worker.ml import models


def conv(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout + cout


def bn(channels: int) -> int:
    return 4 * channels  # gamma, beta, moving mean, moving variance


def dense(nin: int, nout: int) -> int:
    return nin * nout + nout


def ae01_params(k):
    return conv(k, 3, 64) + bn(64) + conv(k, 64, 3) + bn(3)


def ae02_params(k):
    return conv(k, 64, 128) + bn(128) + conv(k, 128, 64) + bn(64)


def ae03_params(k):
    return conv(k, 128, 256) + bn(256) + conv(k, 256, 128) + bn(128)


def encoder_params(k, depth=3):
    parts = [conv(k, 3, 64) + bn(64), conv(k, 64, 128) + bn(128), conv(k, 128, 256) + bn(256)]
    return sum(parts[:depth])


EXPECTED = {
    "build_ae01": ((32, 32, 3), (32, 32, 3), ae01_params),
    "build_ae02": ((32, 32, 64), (32, 32, 64), ae02_params),
    "build_ae03": ((16, 16, 128), (16, 16, 128), ae03_params),
    "build_stacked_ae": (
        (32, 32, 3),
        (32, 32, 3),
        lambda k: ae01_params(k) + ae02_params(k) + ae03_params(k),
    ),
    "build_stacked_classifier": (
        (32, 32, 3),
        (10,),
        lambda k: (
            encoder_params(k)
            + conv(3, 256, 512)
            + conv(3, 512, 512)
            + dense(512, 1024)
            + bn(1024)
            + dense(1024, 10)
        ),
    ),
    "build_single_classifier": (
        (32, 32, 3),
        (10,),
        lambda k: (
            encoder_params(k, depth=1)
            + conv(3, 64, 64)
            + bn(64)
            + conv(3, 64, 128)
            + bn(128)
            + conv(3, 128, 128)
            + bn(128)
            + dense(128, 512)
            + bn(512)
            + dense(512, 10)
        ),
    ),
}


@pytest.mark.parametrize("kernel_size", [3, 7])
@pytest.mark.parametrize("builder", sorted(EXPECTED))
def test_every_model_has_the_seeds_shapes_and_parameter_count(builder, kernel_size):
    model = getattr(models, builder)(kernel_size)
    in_shape, out_shape, params = EXPECTED[builder]
    assert model.input_shape[1:] == in_shape
    assert model.output_shape[1:] == out_shape
    assert model.count_params() == params(kernel_size)


def test_stacked_encoder_is_cut_at_pool_ae03():
    encoder = models.encoder_of(models.build_stacked_classifier(3))
    assert encoder.output_shape[1:] == (8, 8, 256)
    innermost = encoder.layers[-1]
    assert innermost.layers[-1].name == "Pool_AE03_1"


def test_layer_names_are_the_seeds():
    names = {
        layer.name
        for model in (models.build_stacked_ae(3),)
        for sub in model.layers
        for layer in getattr(sub, "layers", [])
        for layer in getattr(layer, "layers", [layer])
    }
    for stage in ("AE01", "AE02", "AE03"):
        for i in (1, 2):
            assert {f"Dense_{stage}_{i}", f"BN_{stage}_{i}", f"Relu_{stage}_{i}"} <= names
    assert {"Pool_AE02_1", "Unpool_AE02_1", "Pool_AE03_1", "Unpool_AE03_1"} <= names


def _randomise(model, seed):
    rng = np.random.default_rng(seed)
    for layer in models.iter_weighted_layers(model):
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.weights])


@pytest.mark.parametrize(
    ("target_builder", "stages"),
    [
        (models.build_stacked_ae, ("ae01", "ae02", "ae03")),
        (models.build_stacked_classifier, ("ae01", "ae02", "ae03")),
        (models.build_single_classifier, ("ae01",)),
    ],
)
def test_trained_autoencoder_weights_load_by_name(target_builder, stages):
    sources = {stage: models.build_autoencoder(stage, 3) for stage in stages}
    for i, model in enumerate(sources.values()):
        _randomise(model, seed=i)
    target = target_builder(3)
    copied = []
    for model in sources.values():
        copied += models.transfer_weights(model, target)
    target_layers = {layer.name: layer for layer in models.iter_weighted_layers(target)}
    compared = 0
    for model in sources.values():
        for layer in models.iter_weighted_layers(model):
            if layer.name not in target_layers:
                continue  # decoders are not part of a classifier
            for got, want in zip(
                target_layers[layer.name].get_weights(), layer.get_weights(), strict=True
            ):
                np.testing.assert_array_equal(got, want)
            compared += 1
    assert compared == len(copied) > 0
    if target_builder is not models.build_stacked_ae:
        assert len(copied) == 2 * len(stages)  # conv + BN of each encoder


def test_transfer_refuses_weights_of_another_kernel_size():
    with pytest.raises(ValueError, match="Dense_AE01_1.*kernel size"):
        models.transfer_weights(models.build_ae01(5), models.build_single_classifier(3))


def test_per_stage_kernel_sizes_build_a_matching_stacked_ae():
    model = models.build_stacked_ae((3, 5, 7))
    layers = {layer.name: layer for layer in models.iter_weighted_layers(model)}
    assert layers["Dense_AE01_1"].kernel.shape[:2] == (3, 3)
    assert layers["Dense_AE02_1"].kernel.shape[:2] == (5, 5)
    assert layers["Dense_AE03_2"].kernel.shape[:2] == (7, 7)


def test_classifier_class_count_is_configurable():
    assert models.build_classifier("single", 3, num_classes=4).output_shape == (None, 4)
    with pytest.raises(ValueError, match="architecture"):
        models.build_classifier("resnet")
