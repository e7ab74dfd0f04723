"""Tests for the in-graph RandomAugment layer and its ImageDataGenerator semantics."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pydantic
import pytest
from keras import ops

from worker.ml.augment import (
    AugmentSettings,
    RandomAugment,
    affine_matrix,
    build_augmenter,
    legacy_generator,
)

SIZE = 32
# Every random setting off, so a test can switch on exactly one.
OFF = dict(
    rotation_range=0.0,
    shear_range=0.0,
    horizontal_flip=False,
    vertical_flip=False,
    width_shift_range=0.0,
    height_shift_range=0.0,
    zoom_range=0.0,
    channel_shift_range=0.0,
)


def random_batch(n: int = 8, seed: int = 0) -> np.ndarray:
    """Noise images in [0, 1]."""
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 3), dtype=np.float32)


def smooth_image() -> np.ndarray:
    """A smooth, asymmetric test image in [0, 1] so interpolation differences stay small."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype("float32")
    channels = [
        0.5 + 0.4 * np.sin(xx / 5.0) * np.cos(yy / 7.0),
        (xx + 2 * yy) / (3 * (SIZE - 1)),
        0.5 + 0.3 * np.cos((xx - yy) / 6.0),
    ]
    return np.stack(channels, axis=-1).astype("float32")


def dot_image(row: int, col: int) -> np.ndarray:
    """A black image with one bright pixel."""
    x = np.zeros((SIZE, SIZE, 3), dtype="float32")
    x[row, col] = 1.0
    return x


def warp(image: np.ndarray, matrix: np.ndarray, fill_mode: str = "nearest") -> np.ndarray:
    """Apply one 8-parameter transform the way the layer does."""
    out = ops.image.affine_transform(image[None], matrix[None], fill_mode=fill_mode)
    return ops.convert_to_numpy(out)[0]


def augment(x: np.ndarray, seed: int = 1, **settings) -> np.ndarray:
    """Run a seeded layer in training mode with OFF overridden by settings."""
    layer = RandomAugment(AugmentSettings(**{**OFF, **settings}), seed=seed)
    return ops.convert_to_numpy(layer(x, training=True))


def bright_pixels(image: np.ndarray) -> np.ndarray:
    """(row, col) of pixels brighter than half."""
    return np.argwhere(image[..., 0] > 0.5)


def test_training_changes_images_and_keeps_shape_dtype_range():
    x = random_batch()
    out = ops.convert_to_numpy(build_augmenter(seed=0)(x, training=True))
    assert out.shape == x.shape
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - x).mean() > 0.05


def test_inference_returns_images_unchanged():
    x = random_batch()
    layer = build_augmenter(seed=0)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x, training=False)), x)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x)), x)
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), layer])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)


def test_each_image_in_a_batch_gets_its_own_transform():
    x = np.repeat(smooth_image()[None], 6, axis=0)
    out = ops.convert_to_numpy(build_augmenter(seed=0)(x, training=True))
    diffs = [np.abs(out[0] - out[i]).mean() for i in range(1, 6)]
    assert min(diffs) > 1e-3


def test_same_seed_reproduces_and_other_seed_differs():
    x = random_batch()
    first = ops.convert_to_numpy(build_augmenter(seed=7)(x, training=True))
    again = ops.convert_to_numpy(build_augmenter(seed=7)(x, training=True))
    other = ops.convert_to_numpy(build_augmenter(seed=8)(x, training=True))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 1e-3


@pytest.mark.parametrize(
    ("tx", "ty", "expected"),
    [(4, 0, (10, 8)), (-3, 0, (10, 15)), (0, 5, (5, 12)), (0, -2, (12, 12))],
)
def test_shift_moves_a_pixel_like_image_data_generator(tx, ty, expected):
    # Transforms map output to input, as in ImageDataGenerator: +tx moves content left.
    x = dot_image(10, 12)
    ours = warp(x, affine_matrix(0, tx, ty, 0, 1, 1, SIZE, SIZE), fill_mode="constant")
    legacy = legacy_generator(AugmentSettings(fill_mode="constant")).apply_transform(
        x, {"tx": tx, "ty": ty}
    )
    assert bright_pixels(ours).tolist() == [list(expected)]
    assert bright_pixels(legacy).tolist() == [list(expected)]


def test_width_shift_moves_content_along_columns_only():
    out = augment(np.repeat(dot_image(16, 16)[None], 8, axis=0), width_shift_range=0.25)
    rows = {int(r) for img in out for r, _ in np.argwhere(img[..., 0] > 0.01)}
    cols = {int(c) for img in out for _, c in np.argwhere(img[..., 0] > 0.01)}
    assert rows == {16}
    assert len(cols) > 4


@pytest.mark.parametrize(
    "params",
    [
        {"theta": 20.0, "tx": 3.0, "ty": -2.0, "shear": 8.0, "zx": 1.1, "zy": 0.9},
        {"theta": -12.0, "tx": -1.5, "ty": 2.5, "shear": -10.0, "zx": 0.9, "zy": 1.05},
        {"theta": 0.0, "tx": 0.0, "ty": 0.0, "shear": 0.0, "zx": 1.3, "zy": 1.3},
        {"theta": 0.0, "tx": 0.0, "ty": 0.0, "shear": 0.0, "zx": 0.75, "zy": 0.8},
        {"theta": 90.0, "tx": 0.0, "ty": 0.0, "shear": 25.0, "zx": 1.0, "zy": 1.0},
    ],
)
@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "constant"])
def test_fused_transform_matches_legacy_apply_transform(params, fill_mode):
    image = smooth_image()
    legacy = legacy_generator(AugmentSettings(fill_mode=fill_mode)).apply_transform(image, params)
    keys = ("theta", "tx", "ty", "shear", "zx", "zy")
    ours = warp(image, affine_matrix(*(params[k] for k in keys), SIZE, SIZE), fill_mode)
    # With constant fill, scipy and Keras blend the 1-pixel border band with cval differently.
    filled = (ours.min(axis=-1) == 0) | (legacy.min(axis=-1) == 0)
    np.testing.assert_allclose(ours[~filled], legacy[~filled], atol=1e-5)
    assert np.abs(ours - legacy).mean() < (0.02 if fill_mode == "constant" else 1e-4)


@pytest.mark.parametrize(("zoom", "shrinks"), [(1.5, True), (0.6, False)])
def test_zoom_above_one_shrinks_content_like_legacy(zoom, shrinks):
    x = np.zeros((SIZE, SIZE, 3), dtype="float32")
    x[12:20, 12:20] = 1.0
    ours = warp(x, affine_matrix(0, 0, 0, 0, zoom, zoom, SIZE, SIZE), "constant")
    legacy = legacy_generator(AugmentSettings()).apply_transform(x, {"zx": zoom, "zy": zoom})
    assert bool(ours.sum() < x.sum()) is shrinks
    assert bool(legacy.sum() < x.sum()) is shrinks


def test_horizontal_flip_mirrors_about_half_the_images():
    x = np.repeat(smooth_image()[None], 32, axis=0)
    out = augment(x, horizontal_flip=True)
    flipped = [np.array_equal(o, x[0, :, ::-1]) for o in out]
    kept = [np.array_equal(o, x[0]) for o in out]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 4 <= sum(flipped) <= 28


def test_flip_in_the_matrix_matches_numpy_flips():
    image = smooth_image()
    horizontal = affine_matrix(0, 0, 0, 0, 1, 1, SIZE, SIZE, flip_horizontal=True)
    vertical = affine_matrix(0, 0, 0, 0, 1, 1, SIZE, SIZE, flip_vertical=True)
    np.testing.assert_array_equal(warp(image, horizontal), image[:, ::-1])
    np.testing.assert_array_equal(warp(image, vertical), image[::-1])


def test_channel_shift_adds_one_value_to_all_channels_and_clips_like_legacy():
    from keras.src.legacy.preprocessing.image import apply_channel_shift

    x = np.broadcast_to(np.float32([0.3, 0.5, 0.7]), (16, SIZE, SIZE, 3)).copy()
    out = augment(x, channel_shift_range=0.2 * 255)
    shifts = out[:, 0, 0, 1] - 0.5
    assert np.abs(shifts).max() <= 0.2 + 1e-6 and np.abs(shifts).min() > 0.0
    for image, shift, result in zip(x, shifts, out, strict=True):
        np.testing.assert_allclose(result, apply_channel_shift(image, shift, 2), atol=1e-6)


def test_value_range_rescales_channel_shift_and_clips():
    x = np.full((4, SIZE, SIZE, 3), 100.0, dtype="float32")
    x[:, 0, 0] = 0.0
    x[:, -1, -1] = 255.0
    layer = RandomAugment(
        AugmentSettings(**{**OFF, "channel_shift_range": 50.0}), seed=3, value_range=(0.0, 255.0)
    )
    out = ops.convert_to_numpy(layer(x, training=True))
    shifts = out[:, 5, 5, 0] - 100.0
    assert np.abs(shifts).max() <= 50.0 and np.abs(shifts).max() > 1.0
    assert out.min() >= 0.0 and out.max() <= 255.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rotation_range", -1.0),
        ("rotation_range", 181.0),
        ("shear_range", -5.0),
        ("width_shift_range", 1.5),
        ("height_shift_range", -0.1),
        ("zoom_range", 1.0),
        ("channel_shift_range", 256.0),
        ("fill_mode", "mirror"),
        ("brightness_range", 0.2),
    ],
)
def test_settings_reject_out_of_range_values_naming_the_field(field, value):
    with pytest.raises(pydantic.ValidationError) as info:
        AugmentSettings(**{field: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_layer_config_round_trips():
    settings = AugmentSettings(rotation_range=5.0, vertical_flip=True, fill_mode="reflect")
    layer = RandomAugment(settings, seed=3, value_range=(-1.0, 1.0), name="aug")
    config = json.loads(json.dumps(layer.get_config()))
    clone = RandomAugment.from_config(config)
    assert clone.settings == settings
    assert (clone.seed, clone.value_range, clone.name) == (3, (-1.0, 1.0), "aug")


def test_layer_survives_saving_a_model(tmp_path):
    settings = AugmentSettings(zoom_range=0.2, fill_mode="wrap")
    inputs = keras.Input((SIZE, SIZE, 3))
    features = build_augmenter(settings, seed=5)(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(features))
    model = keras.Model(inputs, outputs)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.get_layer("random_augment")
    assert isinstance(layer, RandomAugment)
    assert layer.settings == settings and layer.seed == 5
    x = random_batch(2)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_layer_trains_inside_a_compiled_train_step():
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            build_augmenter(seed=0),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    loss = model.train_on_batch(random_batch(4), np.zeros((4, 2), dtype="float32"))
    assert np.isfinite(loss)


def test_module_imports_no_web_db_or_queue_frameworks():
    code = (
        "import sys, worker.ml.augment; "
        "bad = [m for m in ('fastapi', 'celery', 'sqlalchemy', 'backend') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _pipeline_batches(n_batches: int, **kwargs) -> list[np.ndarray]:
    from worker.ml.pipeline import make_input

    x = (random_batch(20, seed=4) * 255).astype("uint8")
    y = np.arange(20) % 3
    data = make_input(x, y, batch_size=8, shuffle=True, seed=5, **kwargs)
    return [
        ops.convert_to_numpy(xb) for (xb, _), _ in zip(data.data, range(n_batches), strict=False)
    ]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data pipeline only")
def test_pipeline_augmentation_depends_only_on_seed_epoch_and_batch():
    settings = AugmentSettings()
    whole = _pipeline_batches(9, augment=settings)  # 3 batches an epoch, epochs 0-2
    later = _pipeline_batches(3, augment=settings, start_epoch=2)
    plain = _pipeline_batches(3)
    for got, want in zip(later, whole[6:], strict=True):
        np.testing.assert_array_equal(got, want)
    assert all(b.min() >= 0.0 and b.max() <= 1.0 and b.dtype == np.float32 for b in whole)
    assert np.abs(whole[0] - plain[0]).mean() > 0.02  # augmented
    assert np.abs(whole[0] - _pipeline_batches(3, augment=settings)[0]).max() == 0.0
    # Epochs draw afresh: the same images land in other batches, but never unaugmented alike.
    assert not np.array_equal(whole[0], whole[3])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data pipeline only")
def test_pipeline_augmentation_applies_the_same_transforms_as_the_layer():
    # Flips only: each output is its input or its mirror, exactly, as with the layer.
    flips = AugmentSettings(**{**OFF, "horizontal_flip": True})
    augmented, plain = _pipeline_batches(3, augment=flips), _pipeline_batches(3)
    mirrored = kept = 0
    for got, want in zip(np.concatenate(augmented), np.concatenate(plain), strict=True):
        mirrored += np.array_equal(got, want[:, ::-1])
        kept += np.array_equal(got, want)
    assert mirrored + kept == 20 and 2 <= mirrored <= 18


def test_finetune_augments_in_the_pipeline_where_it_can_and_old_checkpoints_in_the_model():
    from jobspec.params import FinetuneConfig
    from worker.ml.checkpoint import Checkpoint
    from worker.ml.finetune import augment_in_graph
    from worker.ml.pipeline import can_augment

    config = FinetuneConfig(encoder="scratch", augment=True)
    assert augment_in_graph(config) is not can_augment()
    assert not augment_in_graph(FinetuneConfig(encoder="scratch", augment=False))
    old = Checkpoint("finetune", 1, {"run": {}}, {})  # taken before the pipeline augmented
    assert augment_in_graph(config, old)
    new = Checkpoint("finetune", 1, {"run": {}, "augment": "pipeline"}, {})
    assert augment_in_graph(config, new) is not can_augment()
