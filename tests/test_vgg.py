"""Transfer models: parameter counts, weights from a file, cut_at, freeze and fine-tuning."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from cifarx.errors import ConfigError
from cifarx.models import build_model, preprocessing_rule
from conftest import compose, tiny_train_overrides, write_batches_dir
from test_models import tiny_dataset

HEAD_TOTAL, HEAD_TRAINABLE = 1_061_386, 1_058_314  # 1024-512-10 head on a 512-d flatten


def count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def vgg(name, *overrides):
    cfg = compose("train", [f"model={name}", "model.weights=null", *overrides])
    return cfg, build_model(cfg.model, cfg.data, tiny_dataset(), seed=0)


def test_report_best_model_parameter_counts():
    _, model = vgg("vgg19", "model.cut_at=block4_pool")
    assert model.count_params() == 13_219_402
    assert count(model.trainable_weights) == 2_631_178
    assert tuple(model.get_layer("flatten").output.shape[1:]) == (2048,)
    assert tuple(model.get_layer("features").output.shape[1:]) == (512,)


@pytest.mark.parametrize("name, base", [("vgg16", 14_714_688), ("vgg19", 20_024_384)])
def test_full_bases_with_the_report_head(name, base):
    _, model = vgg(name)
    assert model.count_params() == base + HEAD_TOTAL
    assert count(model.trainable_weights) == HEAD_TRAINABLE


def test_unknown_cut_at_lists_the_layers():
    with pytest.raises(ConfigError, match=r"model.cut_at='block9_pool' is not a layer of vgg16; choose one of: block1_conv1, .*block5_pool"):
        vgg("vgg16", "model.cut_at=block9_pool")


def test_weights_by_path_are_loaded(tmp_path):
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    base.save_weights(path)
    _, model = vgg("vgg16", f"model.weights={path}")
    loaded = model.get_layer("vgg16").get_layer("block3_conv2").get_weights()[0]
    np.testing.assert_array_equal(loaded, base.get_layer("block3_conv2").get_weights()[0])
    assert model.get_layer("imagenet_preprocess") is not None  # pretrained -> VGG's preprocess_input


def test_weights_of_the_wrong_architecture_are_a_clear_error(tmp_path):
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    base.save_weights(path)
    with pytest.raises(ConfigError, match="does not fit vgg19's convolutional base"):
        vgg("vgg19", f"model.weights={path}")


def test_offline_imagenet_download_is_one_clear_line(tmp_path, monkeypatch):
    import keras.src.applications.vgg16 as vgg16_module

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(vgg16_module.file_utils, "get_file", offline)
    cfg = compose("train", ["model=vgg16"])
    with pytest.raises(ConfigError) as err:
        build_model(cfg.model, cfg.data, tiny_dataset(), seed=0)
    message = str(err.value)
    assert "\n" not in message
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message and "model.weights=PATH" in message


def test_data_normalisation_and_pretrained_weights_do_not_fight():
    pretrained = compose("train", ["model=vgg19", "data=normalize"])
    assert preprocessing_rule(pretrained.model, pretrained.data) == "imagenet"
    scratch = compose("train", ["model=vgg19", "model.weights=null", "data=normalize"])
    assert preprocessing_rule(scratch.model, scratch.data) == "zscore"
    _, model = vgg("vgg19", "data=normalize", "model.cut_at=block1_pool")
    assert "zscore" in [layer.name for layer in model.layers]


def test_input_size_resizes_inside_the_model():
    _, model = vgg("vgg16", "model.input_size=64", "model.cut_at=block2_pool")
    assert tuple(model.get_layer("resize").output.shape[1:]) == (64, 64, 3)
    assert model.predict(tiny_dataset().x_train[:2], verbose=0).shape == (2, 10)


@pytest.mark.slow
def test_freeze_then_finetune_changes_the_trainable_count(tmp_path):
    from cifarx.commands.train import run_train
    from cifarx.run.rundir import RunDir

    root = write_batches_dir(tmp_path / "data")
    overrides = [o for o in tiny_train_overrides(root, tmp_path / "c") if not o.startswith("model.")]
    cfg = compose("train", [*overrides, "model=vgg19", "model.weights=null", "model.cut_at=block3_pool",
                            "model.head.units=[32,16]", "model.finetune.blocks=1", "model.finetune.epochs=1"])
    run = RunDir(tmp_path / "run", "train")
    run.begin(cfg)
    metrics = run_train(cfg, run)
    first, second = metrics["stages"]
    assert second["trainable_params"] - first["trainable_params"] == 295_168 + 3 * 590_080  # block3 convs
    assert all(name.startswith("block3_") for name in second["unfrozen_layers"])
    assert metrics["epochs"] == 2
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 3 and history[0].startswith("epoch")  # one header, one row per stage


@pytest.mark.slow
def test_vgg16_one_epoch_end_to_end(tmp_path):
    from conftest import run_cli

    root = write_batches_dir(tmp_path / "data", train_per_class=6, test_per_class=2)
    result = run_cli(["train", "model=vgg16", "model.weights=null", f"data.root={root}",
                      f"data.cache_dir={tmp_path / 'c'}", "trainer.epochs=1", "trainer.batch_size=16"],
                     cwd=tmp_path)  # figures off (conftest): every model's figures are test_train_e2e's
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = (tmp_path / "outputs" / "train").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "vgg16" and metrics["params"] == 14_714_688 + HEAD_TOTAL
    assert metrics["preprocessing"] == "zscore"  # random init: the data config decides
    for name in ("model.keras", "confusion_matrix.csv", "history.csv", "classification_report.json"):
        assert (run / name).exists()
