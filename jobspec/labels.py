"""Words for the keys people read on forms and pages: parameter names, enum values and
metric names ("early_stopping" -> "Early stopping", "finetune/val_accuracy" -> "val
accuracy"). One helper, so a form, a table and a study page name a key the same way."""

from __future__ import annotations

# Words written otherwise than their key: abbreviations and names.
WORDS = {
    "ae01": "AE01",
    "ae02": "AE02",
    "ae03": "AE03",
    "bn": "BN",
    "f1": "F1",
    "lr": "learning rate",
    "sgd": "SGD",
    "adam": "Adam",
    "rmsprop": "RMSprop",
    "xla": "XLA",
    "relu": "ReLU",
}
# Whole keys whose plain words would mislead or read badly.
PHRASES = {
    "images_per_sec": "images/s",
    "epoch_seconds": "epoch time",
    "bn_relu": "BatchNorm + ReLU",
    "n_trials": "trials",
    "jit_compile": "XLA compilation",
}


def label(key: str, *, capital: bool = False) -> str:
    """A key's last part in words: "params.ae01.kernel_size" -> "kernel size",
    "finetune/val_accuracy" -> "val accuracy"; `capital` for a field's own label."""
    name = str(key).rsplit("/", 1)[-1].rsplit(".", 1)[-1]
    text = PHRASES.get(name) or " ".join(WORDS.get(w, w) for w in name.split("_") if w)
    text = text or name
    return text[:1].upper() + text[1:] if capital else text
