"""Splits by design: a split seed apart from the training seed, a fingerprint per split,
pretraining on the training part only, and a warning when a fine-tune's encoder was
pretrained on its validation images."""

from __future__ import annotations

import hashlib
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from jobspec.params import FinetuneConfig
from worker import jobs
from worker.ml import pipeline, pretrain
from worker.ml.datasets.dataset import split_fingerprint
from worker.ml.finetune import finetune
from worker.ml.reporting import Reporter
from worker.ml.splits import pretrain_split_warnings

SPLIT_KEYS = {"seed", "fraction", "n_train", "n_val", "fingerprint"}


@pytest.fixture(scope="module")
def tiny(demo_small):
    """60 train / 20 test images."""
    return demo_small.subset(n_train=60, n_test=20, seed=0)


def _run(kind, params, dataset, out_dir, parent_dir=None):
    return jobs.run(
        kind,
        params,
        dataset=dataset,
        out_dir=out_dir,
        recorder=Reporter(),
        parent_dir=parent_dir,
        study_name=None,
        storage_url="sqlite://",
    )


def _finetune_params(**changes) -> dict:
    base = {"encoder": "scratch", "architecture": "single"} if "encoder" not in changes else {}
    base |= {
        "epochs": 1,
        "batch_size": 20,
        "validation_fraction": 0.25,
    }
    return base | changes


@pytest.fixture(scope="module")
def pretrained(tiny, tmp_path_factory):
    """One pretrain through the job runner (seed 1, split seed 3), every make_input seen."""
    stage = {"epochs": 1, "batch_size": 10}
    params = {
        "ae01": stage,
        "ae02": stage,
        "ae03": stage,
        "seed": 1,
        "split_seed": 3,
        "validation_fraction": 0.25,
        "probe_images": 6,
    }
    out = tmp_path_factory.mktemp("pretrain")
    fed = []

    def recording(x, y=None, **kwargs):
        fed.append((np.array(x), kwargs["shuffle"]))
        return pipeline.make_input(x, y, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pretrain, "make_input", recording)
        status, result, files = _run("pretrain", params, tiny, out)
    assert status == "succeeded"
    split = tiny.split_validation(fraction=0.25, seed=3)
    return SimpleNamespace(out=out, result=result, fed=fed, split=split)


# --- the split and its fingerprint ---------------------------------------------------------


def test_a_split_carries_its_validation_indices_and_fingerprint(tiny):
    split = tiny.split_validation(fraction=0.25, seed=3)
    np.testing.assert_array_equal(tiny.x_train[split.val_indices], split.x_val)
    np.testing.assert_array_equal(tiny.y_train[split.val_indices], split.y_val)
    digest = hashlib.sha256(f"{tiny.fingerprint()};0.25;".encode())
    digest.update(np.sort(split.val_indices).astype("<i8").tobytes())
    assert split.fingerprint == digest.hexdigest()[:16]
    assert split.record() == {
        "seed": 3,
        "fraction": 0.25,
        "n_train": 45,
        "n_val": 15,
        "fingerprint": split.fingerprint,
    }
    assert tiny.split_validation(fraction=0.25, seed=3).fingerprint == split.fingerprint
    assert tiny.split_validation(fraction=0.25, seed=4).fingerprint != split.fingerprint
    assert tiny.split_validation(fraction=0.3, seed=3).fingerprint != split.fingerprint
    # The same images in another order are the same split.
    shuffled = split_fingerprint(tiny.fingerprint(), 0.25, split.val_indices[::-1])
    assert shuffled == split.fingerprint


@pytest.mark.slow
def test_runs_sharing_a_split_seed_share_the_split_whatever_their_seed(tiny, tmp_path):
    splits = {}
    for name, changes in {
        "seed0": {"seed": 0, "split_seed": 7},
        "seed1": {"seed": 1, "split_seed": 7},
        "by_seed0": {"seed": 0},
        "by_seed1": {"seed": 1},
    }.items():
        _, result, _ = _run("finetune", _finetune_params(**changes), tiny, tmp_path / name)
        assert set(result["split"]) == SPLIT_KEYS
        splits[name] = result["split"]
        manifest = json.loads((tmp_path / name / "finetune.json").read_text())
        assert manifest["split"] == result["split"]
    assert splits["seed0"] == splits["seed1"] and splits["seed0"]["seed"] == 7
    # Without a split seed, the training seed drives the split (as before splits had seeds).
    assert splits["by_seed0"]["fingerprint"] != splits["by_seed1"]["fingerprint"]
    assert splits["by_seed0"]["fingerprint"] == tiny.split_validation(fraction=0.25).fingerprint
    assert splits["seed0"]["fingerprint"] != splits["by_seed0"]["fingerprint"]


# --- pretraining sees the training part only -----------------------------------------------


def _rows(x):
    return {hashlib.sha256(image.tobytes()).hexdigest() for image in x}


@pytest.mark.slow
def test_pretraining_trains_on_the_training_part_of_its_split_only(pretrained, tiny):
    split = pretrained.split
    trained = [x for x, shuffle in pretrained.fed if shuffle]
    assert len(trained) == 3  # one training stream per stage
    held_out = _rows(split.x_val) | _rows(tiny.x_test)
    for x in trained:
        np.testing.assert_array_equal(x, split.x_train)
        assert not _rows(x) & held_out
    for x, shuffle in pretrained.fed:
        if not shuffle:
            np.testing.assert_array_equal(x, split.x_val)
    assert pretrained.result["split"] == split.record()
    manifest = json.loads((pretrained.out / "pretrain.json").read_text())
    assert manifest["split"] == split.record() and manifest["decoder_output"] == "bn_relu"


# --- the warning when encoder and fine-tune split differently --------------------------------


def _overlap(tiny, own_seed, parent_seed, fraction=0.25):
    own = tiny.split_validation(fraction=fraction, seed=own_seed)
    parent = tiny.split_validation(fraction=fraction, seed=parent_seed)
    return len(set(own.val_indices) - set(parent.val_indices)), len(own.val_indices)


@pytest.mark.slow
def test_no_warning_when_the_fine_tune_validates_on_the_pretrains_split(pretrained, tiny):
    same = tiny.split_validation(fraction=0.25, seed=3)
    assert pretrain_split_warnings(tiny, same, pretrained.out) == []


@pytest.mark.slow
def test_a_fine_tune_on_another_split_is_told_how_many_images_the_pretrain_trained_on(
    pretrained, tiny, tmp_path
):
    seen, total = _overlap(tiny, own_seed=4, parent_seed=3)
    assert seen > 0
    want = (
        f"The encoder was pretrained on another train/validation split: {seen} of this run's "
        f"{total} validation images were training images of the pretrain, so validation "
        "scores are optimistic."
    )
    config = FinetuneConfig(**_finetune_params(encoder="single", split_seed=4))
    result = finetune(tiny, config, out_dir=tmp_path, pretrained_dir=pretrained.out)
    assert result.training["warnings"] == [want]
    matching = FinetuneConfig(**_finetune_params(encoder="single", split_seed=3, seed=5))
    again = finetune(tiny, matching, out_dir=tmp_path / "b", pretrained_dir=pretrained.out)
    assert again.training["warnings"] == []


@pytest.mark.slow
def test_a_pretrain_from_before_splits_were_recorded_is_checked_by_its_seed(
    pretrained, tiny, tmp_path
):
    old = tmp_path / "old"
    shutil.copytree(pretrained.out, old)
    manifest = json.loads((old / "pretrain.json").read_text())
    del manifest["split"]
    manifest["config"] = {"seed": 3, "validation_fraction": 0.25}  # old runs split by seed
    (old / "pretrain.json").write_text(json.dumps(manifest))
    assert pretrain_split_warnings(tiny, tiny.split_validation(fraction=0.25, seed=3), old) == []
    seen, total = _overlap(tiny, own_seed=0, parent_seed=3)
    [warning] = pretrain_split_warnings(tiny, tiny.split_validation(fraction=0.25, seed=0), old)
    assert f": {seen} of this run's {total} validation images" in warning


@pytest.mark.slow
def test_an_encoder_pretrained_on_other_data_says_so(pretrained, demo_small):
    other = demo_small.subset(n_train=60, n_test=20, seed=1)
    [warning] = pretrain_split_warnings(
        other, other.split_validation(fraction=0.25, seed=3), pretrained.out
    )
    assert "pretrained on another data set" in warning


# --- reconstruction yardsticks -------------------------------------------------------------


def _depth_outputs(loaded, x):
    """Each depth's reconstruction, by calling the stages' halves one after the other."""
    from worker.ml.models import decoder_of, encoder_of

    outputs, code = {}, x
    stages = list(loaded)
    for depth, stage in enumerate(stages, start=1):
        code = encoder_of(loaded[stage])(code, training=False)
        out = code
        for inner in reversed(stages[:depth]):
            out = decoder_of(loaded[inner])(out, training=False)
        outputs[stage] = np.asarray(out)
    return outputs


@pytest.mark.slow
def test_yardsticks_match_a_hand_computation(pretrained, tiny):
    result = pretrained.result
    report = result["reconstruction"]
    assert set(report) == {"stages", "baselines"}
    assert set(report["stages"]) == {"ae01", "ae02", "ae03"}
    x = tiny.x_test.astype("float32") / 255
    by_hand = _depth_outputs(pretrain.load_pretrained(pretrained.out), x)
    for stage, out in by_hand.items():
        got = report["stages"][stage]
        mse = float(np.mean(np.square(out - x), dtype=np.float64))
        assert got["mse"] == pytest.approx(mse, rel=1e-5)
        assert got["psnr"] == pytest.approx(10 * np.log10(1 / got["mse"]), rel=1e-12)
        assert got["zero_fraction"] == pytest.approx(np.mean(out == 0), abs=1e-3)
    stacked = pretrain.artifacts.load_model(pretrained.out / "stacked_ae.keras")
    stacked_mse = float(np.mean(np.square(np.asarray(stacked.predict_on_batch(x)) - x)))
    assert result["test_reconstruction_loss"] == report["stages"]["ae03"]["mse"]
    assert stacked_mse == pytest.approx(result["test_reconstruction_loss"], rel=1e-5)

    exact = tiny.x_test.astype(np.float64) / 255
    colour = np.mean(np.square(exact - exact.mean(axis=(1, 2), keepdims=True)))
    mean_image = (pretrained.split.x_train.astype(np.float64) / 255).mean(axis=0)
    dataset_mean = np.mean(np.square(exact - mean_image))
    baselines = report["baselines"]
    assert baselines["image_mean_colour"]["mse"] == pytest.approx(colour, rel=1e-12)
    assert baselines["dataset_mean_image"]["mse"] == pytest.approx(dataset_mean, rel=1e-12)
    for name in baselines:
        mse = baselines[name]["mse"]
        assert baselines[name] == {"mse": mse, "psnr": pytest.approx(10 * np.log10(1 / mse))}

    manifest = json.loads((pretrained.out / "pretrain.json").read_text())
    assert manifest["reconstruction"] == report
    assert manifest["probe_errors"] == result["probe_errors"]


@pytest.mark.slow
def test_probe_errors_follow_the_probe_order_of_reconstructions_npz(pretrained, tiny):
    errors = pretrained.result["probe_errors"]
    assert set(errors) == {"ae01", "ae02", "ae03"} and all(len(e) == 6 for e in errors.values())
    order = pretrain.probe_indices(tiny.y_test, 6)
    probes = np.load(pretrained.out / "reconstructions.npz")
    np.testing.assert_array_equal(probes["input"], tiny.x_test[order])
    x = tiny.x_test[order].astype("float32") / 255
    for stage, out in _depth_outputs(pretrain.load_pretrained(pretrained.out), x).items():
        want = np.mean(np.square(out - x), axis=(1, 2, 3))
        np.testing.assert_allclose(errors[stage], want, rtol=1e-4)
