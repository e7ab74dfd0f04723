"""The seed's autoencoders and classifiers, as Keras 3 builders.

Layer names are the seed's, so trained weights move between models by name
(`transfer_weights`). Every encoder and decoder is a named sub-model, so the same
encoder can be called inside an autoencoder, a stacked autoencoder or a classifier.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import keras
from keras import layers

from jobspec.stages import AE01, AE02, AE03, STAGES

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
# What each stage's autoencoder reads: the image, then the previous encoder's features.
STAGE_INPUT_SHAPES = {AE01: IMAGE_SHAPE, AE02: (32, 32, 64), AE03: (16, 16, 128)}

KernelSizes = int | Sequence[int]
# How AE01's decoder ends (jobspec.params.DecoderOutput); "bn_relu" is the seed's.
DECODER_OUTPUTS = ("bn_relu", "sigmoid", "linear")


def _kernel_sizes(kernel_size: KernelSizes) -> tuple[int, int, int]:
    """One kernel size for all three stages, or one per stage."""
    if isinstance(kernel_size, int):
        return (kernel_size,) * 3
    sizes = tuple(int(k) for k in kernel_size)
    if len(sizes) != 3:
        raise ValueError(f"kernel_size needs 1 or 3 values, got {len(sizes)}")
    return sizes  # three, by the length check


def _conv_bn_relu(x, filters: int, kernel_size: int, stage: str, index: int):
    x = layers.Conv2D(filters, kernel_size, padding="same", name=f"Dense_{stage}_{index}")(x)
    x = layers.BatchNormalization(name=f"BN_{stage}_{index}")(x)
    return layers.ReLU(name=f"Relu_{stage}_{index}")(x)


def build_encoder(stage: str, kernel_size: int) -> keras.Model:
    """Encoder half of one autoencoder stage ("ae01", "ae02" or "ae03")."""
    tag = stage.upper()
    inputs = keras.Input(STAGE_INPUT_SHAPES[stage], name=f"{tag}_encoder_input")
    filters = {AE01: 64, AE02: 128, AE03: 256}[stage]
    x = _conv_bn_relu(inputs, filters, kernel_size, tag, 1)
    if stage != AE01:
        x = layers.MaxPooling2D(name=f"Pool_{tag}_1")(x)
    return keras.Model(inputs, x, name=f"{tag}_encoder")


def build_decoder(stage: str, kernel_size: int, output: str = "bn_relu") -> keras.Model:
    """Decoder half of one autoencoder stage, back to that stage's input shape.

    `output` is how AE01's decoder (the one that makes the image) ends: the seed's
    Conv + BN + ReLU ("bn_relu"), Conv then a sigmoid ("sigmoid") or the Conv alone
    ("linear"). The conv keeps its seed name, so weights still move by name. AE02's and
    AE03's decoders reconstruct ReLU features and always end in BN + ReLU.
    """
    if output not in DECODER_OUTPUTS:
        raise ValueError(f"decoder output must be one of {DECODER_OUTPUTS}, got {output!r}")
    if stage != AE01 and output != "bn_relu":
        raise ValueError(f"only AE01's decoder has an output option, not {stage}'s")
    tag = stage.upper()
    code_shape = {AE01: (32, 32, 64), AE02: (16, 16, 128), AE03: (8, 8, 256)}[stage]
    inputs = keras.Input(code_shape, name=f"{tag}_decoder_input")
    x = inputs
    if stage != AE01:
        x = layers.UpSampling2D(name=f"Unpool_{tag}_1")(x)
    channels = STAGE_INPUT_SHAPES[stage][-1]
    if output == "bn_relu":
        x = _conv_bn_relu(x, channels, kernel_size, tag, 2)
    else:
        x = layers.Conv2D(channels, kernel_size, padding="same", name=f"Dense_{tag}_2")(x)
        if output == "sigmoid":
            x = layers.Activation("sigmoid", name=f"Sigmoid_{tag}_2")(x)
    return keras.Model(inputs, x, name=f"{tag}_decoder")


def build_autoencoder(stage: str, kernel_size: int, decoder_output: str = "bn_relu") -> keras.Model:
    """One stage's autoencoder: its encoder then its decoder.

    `decoder_output` applies to AE01 only (see build_decoder); other stages ignore it, so a
    pretrain can pass its setting to every stage.
    """
    tag = stage.upper()
    inputs = keras.Input(STAGE_INPUT_SHAPES[stage], name=f"{tag}_input")
    code = build_encoder(stage, kernel_size)(inputs)
    output = decoder_output if stage == AE01 else "bn_relu"
    outputs = build_decoder(stage, kernel_size, output)(code)
    return keras.Model(inputs, outputs, name=tag)


def build_ae01(kernel_size: int = 3, decoder_output: str = "bn_relu") -> keras.Model:
    """AE01: 32x32x3 image -> 32x32x64 code -> 32x32x3 reconstruction."""
    return build_autoencoder(AE01, kernel_size, decoder_output)


def build_ae02(kernel_size: int = 3) -> keras.Model:
    """AE02: AE01 features 32x32x64 -> 16x16x128 code -> 32x32x64."""
    return build_autoencoder(AE02, kernel_size)


def build_ae03(kernel_size: int = 3) -> keras.Model:
    """AE03: AE02 features 16x16x128 -> 8x8x256 code -> 16x16x128."""
    return build_autoencoder(AE03, kernel_size)


def build_stacked_encoder(kernel_size: KernelSizes = 3, depth: int = 3) -> keras.Model:
    """AE01..AE0<depth> encoders chained: 32x32x3 -> 8x8x256 for depth 3."""
    sizes = _kernel_sizes(kernel_size)
    inputs = keras.Input(IMAGE_SHAPE, name="stacked_encoder_input")
    x = inputs
    for stage, k in zip(STAGES[:depth], sizes, strict=False):
        x = build_encoder(stage, k)(x)
    name = "stacked_encoder" if depth == 3 else f"stacked_encoder_{depth}"
    return keras.Model(inputs, x, name=name)


def build_stacked_decoder(
    kernel_size: KernelSizes = 3, decoder_output: str = "bn_relu"
) -> keras.Model:
    """AE03, AE02 then AE01 decoders: 8x8x256 -> 32x32x3 (AE01's ending as asked)."""
    sizes = _kernel_sizes(kernel_size)
    inputs = keras.Input((8, 8, 256), name="stacked_decoder_input")
    x = inputs
    for stage, k in reversed(list(zip(STAGES, sizes, strict=True))):
        x = build_decoder(stage, k, decoder_output if stage == AE01 else "bn_relu")(x)
    return keras.Model(inputs, x, name="stacked_decoder")


def build_stacked_ae(kernel_size: KernelSizes = 3, decoder_output: str = "bn_relu") -> keras.Model:
    """The three autoencoders stacked: encode 1-2-3, decode 3-2-1."""
    inputs = keras.Input(IMAGE_SHAPE, name="stacked_ae_input")
    code = build_stacked_encoder(kernel_size)(inputs)
    outputs = build_stacked_decoder(kernel_size, decoder_output)(code)
    return keras.Model(inputs, outputs, name="stacked_ae")


def _classifier(encoder: keras.Model, head: keras.Model, name: str) -> keras.Model:
    inputs = keras.Input(IMAGE_SHAPE, name=f"{name}_input")
    return keras.Model(inputs, head(encoder(inputs)), name=name)


def build_stacked_head(num_classes: int = NUM_CLASSES) -> keras.Model:
    """The seed's CNN on top of the 8x8x256 stacked code."""
    inputs = keras.Input((8, 8, 256), name="stacked_head_input")
    x = layers.Conv2D(512, 3, padding="same", activation="relu", name="Head_conv_1")(inputs)
    x = layers.Conv2D(512, 3, padding="same", activation="relu", name="Head_conv_2")(x)
    x = layers.GlobalAveragePooling2D(name="Head_gap")(x)
    x = layers.Dense(1024, name="Head_dense_1")(x)
    x = layers.BatchNormalization(name="Head_bn_1")(x)
    x = layers.ReLU(name="Head_relu_1")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="Head_output")(x)
    return keras.Model(inputs, outputs, name="stacked_head")


def build_single_head(num_classes: int = NUM_CLASSES) -> keras.Model:
    """The seed's CNN on top of AE01's 32x32x64 code.

    The seed's convs carry activation='relu' and are then followed by BN and ReLU;
    kept as the seed wrote it.
    """
    inputs = keras.Input((32, 32, 64), name="single_head_input")
    x = inputs
    for i, (filters, pool) in enumerate(((64, True), (128, False), (128, True)), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"Head_conv_{i}")(x)
        x = layers.BatchNormalization(name=f"Head_bn_{i}")(x)
        x = layers.ReLU(name=f"Head_relu_{i}")(x)
        if pool:
            x = layers.MaxPooling2D(name=f"Head_pool_{i}")(x)
    x = layers.GlobalAveragePooling2D(name="Head_gap")(x)
    x = layers.Dense(512, name="Head_dense_1")(x)
    x = layers.BatchNormalization(name="Head_bn_4")(x)
    x = layers.ReLU(name="Head_relu_4")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="Head_output")(x)
    return keras.Model(inputs, outputs, name="single_head")


def build_stacked_classifier(
    kernel_size: KernelSizes = 3, num_classes: int = NUM_CLASSES
) -> keras.Model:
    """Stacked encoder (cut at Pool_AE03_1, 8x8x256) topped with the seed's CNN."""
    return _classifier(
        build_stacked_encoder(kernel_size), build_stacked_head(num_classes), "stacked_classifier"
    )


def build_single_classifier(
    kernel_size: KernelSizes = 3, num_classes: int = NUM_CLASSES
) -> keras.Model:
    """AE01's encoder alone (32x32x64) topped with the seed's smaller CNN."""
    encoder = build_encoder(AE01, _kernel_sizes(kernel_size)[0])
    return _classifier(encoder, build_single_head(num_classes), "single_classifier")


def build_classifier(
    architecture: str, kernel_size: KernelSizes = 3, num_classes: int = NUM_CLASSES
) -> keras.Model:
    """Classifier by architecture name: "stacked" or "single"."""
    builders = {"stacked": build_stacked_classifier, "single": build_single_classifier}
    if architecture not in builders:
        raise ValueError(f"architecture must be one of {sorted(builders)}, got {architecture!r}")
    return builders[architecture](kernel_size, num_classes)


def encoder_of(model: keras.Model) -> keras.Model:
    """The encoder sub-model of an autoencoder or classifier (its first nested model)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"{model.name} has no encoder sub-model")


def decoder_of(autoencoder: keras.Model) -> keras.Model:
    """The decoder sub-model of an autoencoder (its second nested model)."""
    nested = [layer for layer in autoencoder.layers if isinstance(layer, keras.Model)]
    if len(nested) < 2:
        raise ValueError(f"{autoencoder.name} has no decoder sub-model")
    return nested[1]


def set_bn_momentum(model: keras.Model, momentum: float) -> None:
    """Set the moving-average momentum of every BatchNormalization layer, nested too."""
    for layer in iter_weighted_layers(model):
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum


def iter_weighted_layers(model: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Every layer that owns weights, descending into nested models."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            yield from iter_weighted_layers(layer)
        elif layer.weights:
            yield layer


def transfer_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy weights from source to target for every layer name they share.

    Returns the names copied; a shared name with different weight shapes is an error,
    since it means the kernel sizes of the two models differ.
    """
    by_name = {layer.name: layer for layer in iter_weighted_layers(source)}
    copied = []
    for layer in iter_weighted_layers(target):
        match = by_name.get(layer.name)
        if match is None:
            continue
        src_shapes = [tuple(w.shape) for w in match.weights]
        dst_shapes = [tuple(w.shape) for w in layer.weights]
        if src_shapes != dst_shapes:
            raise ValueError(
                f"layer {layer.name}: weight shapes {src_shapes} in {source.name} do not fit "
                f"{dst_shapes} in {target.name} (different kernel size?)"
            )
        layer.set_weights(match.get_weights())
        copied.append(layer.name)
    return copied
