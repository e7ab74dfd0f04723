"""How well the trained autoencoders reconstruct test images, with yardsticks to read it by.

Each depth of the stack is scored as an image autoencoder: "ae01" (image -> enc1 -> dec1),
"ae02" (enc1, enc2, dec2, dec1) and "ae03" (the whole stacked AE). Beside them, two
baselines that learn nothing: each image replaced by its own mean colour, and every image
replaced by the mean training image. A loss above a baseline's means the autoencoder
reconstructs worse than a flat colour.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from jobspec.stages import STAGES
from worker.ml.models import IMAGE_SHAPE, decoder_of, encoder_of
from worker.ml.pipeline import to_float

BATCH_SIZE = 256


def depth_model(models: dict[str, keras.Model]) -> keras.Model | None:
    """One model whose outputs are the reconstructions at each depth trained so far.

    It shares the stages' layers (no copies), so each batch runs every encoder once.
    None when no stage exists.
    """
    stages = trained_depths(models)
    if not stages:
        return None
    inputs = keras.Input(IMAGE_SHAPE, name="depths_input")
    code, outputs = inputs, {}
    for depth, stage in enumerate(stages, start=1):
        code = encoder_of(models[stage])(code)
        x = code
        for inner in reversed(stages[:depth]):
            x = decoder_of(models[inner])(x)
        outputs[stage] = x
    return keras.Model(inputs, outputs, name="depths")


def trained_depths(models: dict[str, keras.Model]) -> list[str]:
    """The stages from AE01 on that have a model, up to the first missing one."""
    depth = 0
    while depth < len(STAGES) and STAGES[depth] in models:
        depth += 1
    return list(STAGES[:depth])


def _predict(model: keras.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    out = model.predict_on_batch(x)
    return {stage: np.asarray(images, dtype=np.float32) for stage, images in out.items()}


def psnr(mse: float) -> float | None:
    """Peak signal-to-noise ratio in dB for pixels in [0, 1]; None for a perfect copy."""
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else None


def reconstruction_report(
    models: dict[str, keras.Model], x_test: np.ndarray, x_train: np.ndarray
) -> dict:
    """Test MSE, PSNR and share of exact zeros per depth, and the two baselines.

    x_train is the training part the autoencoders saw (its mean image is a baseline). Runs
    in batches: no more than one batch of outputs is held at a time.
    """
    model, stages = depth_model(models), trained_depths(models)
    squared = dict.fromkeys(stages, 0.0)
    zeros = dict.fromkeys(stages, 0)
    mean_image = _mean_image(x_train)
    colour_sq, mean_sq = 0.0, 0.0
    for start in range(0, len(x_test), BATCH_SIZE):
        batch = x_test[start : start + BATCH_SIZE]
        x = to_float(batch)
        if model is not None:
            for stage, out in _predict(model, x).items():
                squared[stage] += float(np.square(out - x).sum(dtype=np.float64))
                zeros[stage] += int(np.count_nonzero(out == 0))
        exact = batch.astype(np.float64) / 255.0
        colour = exact.mean(axis=(1, 2), keepdims=True)
        colour_sq += float(np.square(exact - colour).sum())
        mean_sq += float(np.square(exact - mean_image).sum())
    values = x_test.size
    report = {
        stage: _score(squared[stage] / values) | {"zero_fraction": zeros[stage] / values}
        for stage in stages
    }
    baselines = {
        "image_mean_colour": _score(colour_sq / values),
        "dataset_mean_image": _score(mean_sq / values),
    }
    return {"stages": report, "baselines": baselines}


def _score(mse: float) -> dict:
    return {"mse": mse, "psnr": psnr(mse)}


def _mean_image(x: np.ndarray) -> np.ndarray:
    """Per-pixel, per-channel mean of uint8 images, in [0, 1], summed in batches."""
    total = np.zeros(IMAGE_SHAPE, np.float64)
    for start in range(0, len(x), BATCH_SIZE * 16):
        total += x[start : start + BATCH_SIZE * 16].sum(axis=0, dtype=np.float64)
    return total / (255.0 * len(x))


def probe_indices(labels: np.ndarray, count: int) -> np.ndarray:
    """A fixed set of test images: round-robin over classes, first of each."""
    chosen: list[int] = []
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    depth = 0
    while len(chosen) < min(count, len(labels)):
        for indices in by_class:
            if depth < len(indices) and len(chosen) < count:
                chosen.append(int(indices[depth]))
        depth += 1
    return np.array(chosen, dtype=np.int64)


def probe_reconstructions(
    models: dict[str, keras.Model], x_probe: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, list[float]]]:
    """The probe images and each depth's reconstruction of them (uint8, for the picture),
    and each probe's MSE per depth (from the unrounded outputs), in probe order."""
    x = to_float(x_probe)
    model = depth_model(models)
    outputs = {} if model is None else _predict(model, x)
    images = {"input": x, **outputs}
    errors = {
        stage: [float(e) for e in np.square(out - x).mean(axis=(1, 2, 3), dtype=np.float64)]
        for stage, out in outputs.items()
    }
    return {name: _to_uint8(batch) for name, batch in images.items()}, errors


def _to_uint8(images) -> np.ndarray:
    return (np.clip(np.asarray(images), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
