"""Image augmentation replacing the legacy ImageDataGenerator.

`augment_batch` holds the semantics (backend-agnostic keras.ops). Training on TensorFlow
runs it as a parallel tf.data stage (worker.ml.pipeline) with stateless draws; other
backends run it inside the compiled step through the RandomAugment layer."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from jobspec.params import AugmentSettings

# Columns of the per-image uniform draw; one RNG call per batch keeps eager mode cheap.
_THETA, _TX, _TY, _SHEAR, _ZX, _ZY, _HFLIP, _VFLIP, _CSHIFT = range(9)
N_DRAWS = 9  # uniform draws per image that augment_batch consumes


def _compose(theta, tx, ty, shear, zx, zy, fx, fy, *, height: int, width: int):
    """Batched (N, 8) output->input transforms; angles in radians, shifts in pixels."""
    # Closed form of ImageDataGenerator's rotation @ shift @ shear @ zoom about the centre,
    # followed by its flips; x is the column, y the row, as affine_transform expects.
    ox, oy = (width - 1) / 2.0, (height - 1) / 2.0
    cos_t, sin_t = ops.cos(theta), ops.sin(theta)
    a0 = cos_t * zx * fx
    a1 = -ops.sin(theta + shear) * zy * fy
    b0 = sin_t * zx * fx
    b1 = ops.cos(theta + shear) * zy * fy
    a2 = ox + cos_t * tx - sin_t * ty - (a0 * ox + a1 * oy)
    b2 = oy + sin_t * tx + cos_t * ty - (b0 * ox + b1 * oy)
    zeros = ops.zeros_like(a0)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=-1)


def affine_matrix(
    theta_deg: float,
    tx: float,
    ty: float,
    shear_deg: float,
    zx: float,
    zy: float,
    height: int,
    width: int,
    *,
    flip_horizontal: bool = False,
    flip_vertical: bool = False,
) -> np.ndarray:
    """The 8-parameter transform the layer uses for ImageDataGenerator's transform parameters."""
    # tx/ty follow apply_transform: tx moves along columns (x), ty along rows (y), in pixels.
    args = [math.radians(theta_deg), tx, ty, math.radians(shear_deg), zx, zy]
    args += [-1.0 if flip_horizontal else 1.0, -1.0 if flip_vertical else 1.0]
    tensors = [ops.convert_to_tensor(np.array([a], dtype="float32")) for a in args]
    return ops.convert_to_numpy(_compose(*tensors, height=height, width=width))[0]


def _flip_factor(u, enabled: bool):
    """-1 where an enabled flip fires (probability 0.5), else 1."""
    if not enabled:
        return 1.0
    return 1.0 - 2.0 * ops.cast(ops.less(u, 0.5), "float32")


def _symmetric(u, limit: float):
    """Map U(0, 1) draws to U(-limit, limit)."""
    return (2.0 * u - 1.0) * limit


def _transforms(draws, settings: AugmentSettings, height: int, width: int):
    """Per-image (N, 8) transforms from (N, 9) uniform draws."""
    s = settings
    # One unstack instead of nine slices: fewer ops matters when run eagerly.
    col = ops.unstack(draws, num=N_DRAWS, axis=1)
    zoom = 1.0 + _symmetric(col[_ZX], s.zoom_range), 1.0 + _symmetric(col[_ZY], s.zoom_range)
    return _compose(
        _symmetric(col[_THETA], math.radians(s.rotation_range)),
        _symmetric(col[_TX], s.width_shift_range * width),
        _symmetric(col[_TY], s.height_shift_range * height),
        _symmetric(col[_SHEAR], math.radians(s.shear_range)),
        zoom[0],
        zoom[1],
        _flip_factor(col[_HFLIP], s.horizontal_flip),
        _flip_factor(col[_VFLIP], s.vertical_flip),
        height=height,
        width=width,
    )


def _channel_shift(images, u, settings: AugmentSettings, value_range: tuple[float, float]):
    """Add one intensity per image to all channels, clipped to its min/max and value_range."""
    low, high = value_range
    # The range is in 0..255 units; rescale it to the layer's value range.
    limit = settings.channel_shift_range * (high - low) / 255.0
    shift = ops.reshape(_symmetric(u, limit), (-1, 1, 1, 1))
    # Legacy clips to the image's own min/max; folding value_range in saves a full pass.
    lo = ops.maximum(ops.min(images, axis=(1, 2, 3), keepdims=True), low)
    hi = ops.minimum(ops.max(images, axis=(1, 2, 3), keepdims=True), high)
    return ops.clip(images + shift, lo, hi)


def augment_batch(
    images,
    draws,
    settings: AugmentSettings,
    value_range: tuple[float, float] = (0.0, 1.0),
):
    """Augment a (B, H, W, C) batch with (B, N_DRAWS) uniform draws in [0, 1).

    The one implementation of the semantics: the layer calls it with draws from a seed
    generator, the tf.data pipeline with stateless draws keyed by (seed, epoch, batch)."""
    images = ops.cast(images, "float32")
    height, width = images.shape[1], images.shape[2]
    out = ops.image.affine_transform(
        images,
        _transforms(draws, settings, height, width),
        interpolation="bilinear",
        fill_mode=settings.fill_mode,
        fill_value=0.0,
        data_format="channels_last",
    )
    if settings.channel_shift_range > 0:
        return _channel_shift(out, draws[:, _CSHIFT], settings, value_range)
    return ops.clip(out, value_range[0], value_range[1])


@keras.saving.register_keras_serializable(package="stacklab")
class RandomAugment(keras.layers.Layer):
    """One fused random affine transform per image (rotation, shear, zoom, shift composed into a
    single matrix, applied with keras.ops.image.affine_transform), plus random flips and a random
    per-image channel shift; identity when training is False."""

    def __init__(
        self,
        settings: AugmentSettings | dict | None = None,
        seed: int | None = None,
        value_range: tuple[float, float] | list[float] = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if settings is None:
            settings = AugmentSettings()
        elif isinstance(settings, dict):
            settings = AugmentSettings.model_validate(settings)
        self.settings = settings
        self.seed = seed
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.generator = keras.random.SeedGenerator(seed)
        self.built = True

    def call(self, images, training=None):
        """Augment a (B, H, W, C) batch when training; return it untouched otherwise."""
        if not training:
            return images
        draws = keras.random.uniform((ops.shape(images)[0], N_DRAWS), seed=self.generator)
        return augment_batch(images, draws, self.settings, self.value_range)

    def compute_output_shape(self, input_shape):
        """Augmentation keeps the shape."""
        return input_shape

    def get_config(self) -> dict[str, Any]:
        """Config that rebuilds the layer, settings included."""
        config = super().get_config()
        config.update(
            settings=self.settings.model_dump(),
            seed=self.seed,
            value_range=list(self.value_range),
        )
        return config


def build_augmenter(
    settings: AugmentSettings | None = None, *, seed: int | None = None
) -> RandomAugment:
    """The augmentation layer for the given settings (defaults when None)."""
    return RandomAugment(settings, seed=seed, name="random_augment")


def legacy_generator(settings: AugmentSettings, *, value_range: tuple[float, float] = (0.0, 1.0)):
    """ImageDataGenerator with the same eight settings, for benchmarks and semantic checks."""
    # Lazy: the legacy module is deprecated and only the bench and tests need it.
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    # Legacy adds channel_shift_range in the data's own units; ours is 0..255 rescaled.
    scale = (value_range[1] - value_range[0]) / 255.0
    return ImageDataGenerator(
        rotation_range=settings.rotation_range,
        shear_range=settings.shear_range,
        horizontal_flip=settings.horizontal_flip,
        vertical_flip=settings.vertical_flip,
        width_shift_range=settings.width_shift_range,
        height_shift_range=settings.height_shift_range,
        zoom_range=settings.zoom_range,
        channel_shift_range=settings.channel_shift_range * scale,
        fill_mode=settings.fill_mode,
        cval=0.0,
        data_format="channels_last",
    )
