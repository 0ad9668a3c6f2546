"""Model builders: the report's parameter counts and shapes, and the augmentation layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifarx.data import Dataset
from cifarx.models import build_model
from cifarx.models.preprocessing import RandomFlipShift
from conftest import compose

COMPILED_STEPS = True  # each model's layers inside traced steps (conftest: other modules run steps eagerly)


def tiny_dataset(n=20):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    y = np.arange(n) % 10
    return Dataset(x, y, x[:0], y[:0], x, y, [str(i) for i in range(10)])


def test_simple_cnn_is_the_report_table():
    cfg = compose("train", [])
    model = build_model(cfg.model, cfg.data, tiny_dataset(), seed=0)
    assert model.count_params() == 72_922
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 72_826
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes["conv2d_1"] == (30, 30, 16) and shapes["conv2d_2"] == (28, 28, 16)
    assert shapes["conv2d_4"] == (14, 14, 32) and shapes["max_pooling2d_2"] == (7, 7, 32)
    assert shapes["conv2d_5"] == (5, 5, 64) and shapes["conv2d_6"] == (3, 3, 64)
    assert shapes["flatten_1"] == (64,) and shapes["dense_1"] == (10,)
    assert model.get_layer("conv2d_1").kernel_initializer.__class__.__name__ == "HeNormal"


def test_zscore_layer_uses_training_statistics():
    cfg = compose("train", [])
    data = tiny_dataset()
    model = build_model(cfg.model, cfg.data, data, seed=0)
    norm = keras.Model(model.input, model.get_layer("zscore").output)
    out = keras.ops.convert_to_numpy(norm(data.x_train))
    np.testing.assert_allclose(out.reshape(-1, 3).mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(out.reshape(-1, 3).std(axis=0), 1, atol=1e-3)


def test_l2_and_width_are_configurable():
    cfg = compose("train", ["model.l2=0.001", "model.filters=[8,16,32]"])
    model = build_model(cfg.model, cfg.data, tiny_dataset(), seed=0)
    assert model.get_layer("conv2d_1").filters == 8
    assert len(model.losses) == 7  # one L2 term per conv and the dense layer


def test_augmentation_is_an_exact_shift_and_flip_and_off_at_inference():
    x = np.random.default_rng(0).random((32, 32, 32, 3)).astype("float32")
    layer = RandomFlipShift(flip=True, shift=0.125, seed=3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    matched, flipped = 0, 0
    for i in range(len(x)):
        for img, was_flipped in ((x[i], False), (x[i][:, ::-1], True)):
            padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
            if any(np.array_equal(y[i], padded[a:a + 32, b:b + 32]) for a in range(9) for b in range(9)):
                matched += 1
                flipped += was_flipped
                break
    assert matched == len(x)  # every output is one flip + integer shift of its input, zero fill
    assert 0 < flipped < len(x)


def test_augmentation_fills_the_uncovered_border_with_fill_value():
    x = np.full((64, 8, 8, 1), 100.0, dtype="float32")
    layer = RandomFlipShift(flip=True, shift=0.25, fill_value=-1.0, seed=5)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    assert set(np.unique(y)) == {-1.0, 100.0}
    shifted = (y == -1.0).any(axis=(1, 2, 3))
    assert 0 < shifted.sum() < len(y)  # some images drew a zero shift, most did not
    inside = (y == 100.0).sum(axis=(1, 2, 3))
    assert inside.min() >= 6 * 6  # at most 2 pixels (0.25 * 8) shifted out on each axis


def test_reflect_fill_is_airbench_s_crop_of_a_reflect_padded_batch():
    x = np.random.default_rng(1).random((32, 32, 32, 3)).astype("float32")
    layer = RandomFlipShift(flip=True, shift=0.0625, reflect=True, fill_value=-5.0, seed=4)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    for i in range(len(x)):  # every output: a 32x32 crop of the 2-pixel reflect-padded image, mirrored or not
        crops = [np.pad(img, ((2, 2), (2, 2), (0, 0)), mode="reflect")[a:a + 32, b:b + 32]
                 for img in (x[i], x[i][:, ::-1]) for a in range(5) for b in range(5)]
        assert any(np.array_equal(y[i], crop) for crop in crops), i
    assert not (y == -5.0).any()  # nothing is filled
    cfg = compose("train", ["data=augment", "data.augment.fill=reflect", "model.filters=[4,4,4]"])
    model = build_model(cfg.model, cfg.data, tiny_dataset(), seed=0)
    assert model.get_layer("augment").reflect is True
    assert RandomFlipShift.from_config(model.get_layer("augment").get_config()).reflect is True


def test_augmentation_layer_survives_save_and_load(tmp_path):
    cfg = compose("train", ["data=augment", "model.filters=[4,4,4]"])
    model = build_model(cfg.model, cfg.data, tiny_dataset(), seed=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("augment").shift == pytest.approx(0.125)
    x = tiny_dataset().x_train
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def _docs_block(marker: str) -> str:
    """The fenced code block of docs/development.md ("Adding a model") that starts with ``marker``."""
    import re

    from conftest import REPO

    blocks = re.findall(r"```(?:python|yaml)\n(.*?)```", (REPO / "docs" / "development.md").read_text(), re.S)
    return next(b for b in blocks if b.startswith(marker))


def test_a_new_model_is_one_class_and_one_yaml_file_as_the_docs_show(tmp_path, monkeypatch, batches_dir):
    """docs/development.md's two files, added outside the package: the model trains, the bad value is refused."""
    import json

    import cifarx.models
    from cifarx.config.schema import config_dir
    from conftest import run_cli

    code = tmp_path / "code"
    code.mkdir()
    (code / "tiny.py").write_text(_docs_block("# src/cifarx/models/tiny.py"))
    monkeypatch.setattr(cifarx.models, "__path__", [*cifarx.models.__path__, str(code)])
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "tiny.yaml").write_text(_docs_block("# conf/model/tiny.yaml"))
    common = [f"hydra.searchpath=[file://{config_dir()}/commands/train,file://{tmp_path / 'conf'}]",
              f"data.root={batches_dir}", f"data.cache_dir={tmp_path / 'cache'}", "trainer.epochs=1", "model=tiny"]
    result = run_cli(["train", *common, "model.filters=8", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"] == "tiny" and metrics["params"] == (3 * 3 * 3 * 8 + 8) + (8 * 10 + 10)
    refused = run_cli(["train", *common, "model.filters=0", f"hydra.run.dir={tmp_path / 'bad'}"], cwd=tmp_path)
    assert refused.returncode == 2 and "model.filters=0 must be > 0" in refused.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("n", [1, 7, 16, 37])
def test_predicting_in_full_batches_gives_the_plain_predictions(n):
    """The zero-padded last batch changes nothing: inference is per image (BatchNorm uses its
    moving statistics)."""
    from cifarx.evaluation import predict_in_full_batches

    cfg = compose("train", ["model.filters=[4,8,8]"])
    model = build_model(cfg.model, cfg.data, tiny_dataset(), seed=0)
    x = np.random.default_rng(n).integers(0, 255, (n, 32, 32, 3)).astype(np.uint8)
    padded = predict_in_full_batches(model, x, batch_size=16)
    assert padded.shape == (n, 10)
    np.testing.assert_allclose(padded, model.predict(x, batch_size=16, verbose=0), rtol=1e-5, atol=1e-6)


def test_an_integer_where_keras_means_a_float_is_given_as_a_float():
    """Regression: optimizer=sgd optimizer.momentum=0 passed pre-flight, then Keras refused the
    int inside the run ('`momentum` must be a float between [0, 1]')."""
    from cifarx.config.build import instantiate

    cfg = compose("train", ["optimizer=sgd", "optimizer.momentum=0", "optimizer.learning_rate=1"])
    optimizer = instantiate(cfg.optimizer, "optimizer")
    assert optimizer.momentum == 0.0 and float(optimizer.learning_rate) == 1.0
