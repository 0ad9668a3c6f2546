"""The airbench model family and the training tricks every model can use (issue: a strong, fast model)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifarx.data import Dataset
from cifarx.evaluation import predict_proba, tta_views
from cifarx.models import build_model, load_model
from cifarx.models.airbench import identity_kernel, whitening_kernel
from cifarx.run.rundir import RunDir
from cifarx.training.lr_schedules import TriangularSchedule
from conftest import compose, tiny_train_overrides, write_batches_dir

COMPILED_STEPS = True  # the airbench layers and tricks inside traced steps (conftest: other modules run steps eagerly)


def dataset(train: np.ndarray, test: np.ndarray) -> Dataset:
    y_train, y_test = np.arange(len(train)) % 10, np.arange(len(test)) % 10
    return Dataset(train, y_train, train[:0], y_train[:0], test, y_test, [str(i) for i in range(10)])


def images(n: int, seed: int, low: int = 0, high: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, (n, 32, 32, 3), dtype=np.uint8)


def test_airbench_at_airbench94_width_has_its_parameter_count_and_named_layers():
    cfg = compose("train", ["model=airbench"])
    model = build_model(cfg.model, cfg.data, dataset(images(40, 0), images(10, 1)), seed=0)
    # stem 2*2*3*24 (frozen) + convs 9*(24*64 + 64*64 + 64*256 + 3*256*256) + BatchNorm statistics
    # 2*1152 (not trained) + BatchNorm biases 1152 + linear 256*10
    assert model.count_params() == 288 + 1_967_616 + 2_304 + 1_152 + 2_560 == 1_973_920
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert model.count_params() - trainable == 288 + 2 * 2 * (64 + 256 + 256)  # stem + BN moving stats
    names = {layer.name for layer in model.layers}
    assert {"whiten", "block1_1_conv", "block2_2_bn", "block3_2_act", "features", "logits",
            "predictions"} <= names
    assert tuple(model.get_layer("features").output.shape[1:]) == (256,)
    half = compose("train", ["experiment=fast_cpu"])
    small = build_model(half.model, half.data, dataset(images(40, 0), images(10, 1)), seed=0)
    assert small.count_params() == 498_656


def test_whitening_stem_comes_from_training_images_only():
    """A stem computed with test images would differ: the test split is very unlike the train split."""
    train, test = images(60, 0, 0, 128), images(60, 1, 128, 256)
    cfg = compose("train", ["model=airbench", "data=raw"])  # raw pixels: the stem sees uint8 values as floats
    model = build_model(cfg.model, cfg.data, dataset(train, test), seed=0)
    stem = keras.ops.convert_to_numpy(model.get_layer("whiten").kernel)
    np.testing.assert_allclose(stem, whitening_kernel(train.astype("float32"), 2, 5e-4), rtol=1e-4, atol=1e-5)
    leaked = whitening_kernel(np.concatenate([train, test]).astype("float32"), 2, 5e-4)
    assert not np.allclose(stem, leaked, rtol=1e-2, atol=1e-3)
    assert not model.get_layer("whiten").trainable


def test_whitening_kernel_whitens_patches():
    x = np.random.default_rng(0).normal(size=(200, 8, 8, 3)) @ np.array([[1, 0.9, 0], [0, 1, 0.5], [0, 0, 1.0]])
    kernel = whitening_kernel(x, 2, 0.0)[..., :12]  # the positive half
    patches = np.stack([x[:, i:7 + i, j:7 + j] for i in range(2) for j in range(2)], axis=3).reshape(-1, 12)
    out = (patches - patches.mean(0)) @ kernel.reshape(12, 12)
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.eye(12), atol=0.05)


def test_identity_init_makes_each_conv_pass_its_input_channels_through():
    """airbench94's Dirac init: the first min(in, out) filters of each 3x3 conv copy their own
    input channel at initialisation; the other filters keep their random draw."""
    drawn = np.random.default_rng(0).normal(size=(3, 3, 4, 6))
    kernel = identity_kernel(drawn)
    x = np.random.default_rng(1).normal(size=(5, 5, 4))
    centre = np.einsum("hwi,hwio->o", x[1:4, 1:4], kernel)  # the conv's output at the centre pixel
    np.testing.assert_allclose(centre[:4], x[2, 2])
    np.testing.assert_array_equal(kernel[..., 4:], drawn[..., 4:])
    assert identity_kernel(drawn[..., :2]).shape == (3, 3, 4, 2)  # fewer filters than inputs: each an identity

    cfg = compose("train", ["model=airbench", "model.width=0.25"])  # on by default, as in airbench94
    model = build_model(cfg.model, cfg.data, dataset(images(40, 0), images(10, 1)), seed=0)
    conv = keras.ops.convert_to_numpy(model.get_layer("block2_1_conv").kernel)  # 16 -> 64 channels
    np.testing.assert_array_equal(conv[..., :16], identity_kernel(np.zeros((3, 3, 16, 16))))
    assert np.abs(conv[..., 16:]).max() > 0
    plain = compose("train", ["model=airbench", "model.identity_init=false", "model.width=0.25"])
    drawn_model = build_model(plain.model, plain.data, dataset(images(40, 0), images(10, 1)), seed=0)
    assert not np.allclose(keras.ops.convert_to_numpy(drawn_model.get_layer("block2_1_conv").kernel)[..., :16],
                           conv[..., :16])


def test_flip_tta_is_exact_and_only_changes_evaluation():
    cfg = compose("train", ["model=airbench", "model.width=0.125", "data=augment"])
    x = images(16, 2)
    model = build_model(cfg.model, cfg.data, dataset(images(40, 0), x), seed=0)
    plain = predict_proba(model, x, 8)
    flipped_input = predict_proba(model, x[:, :, ::-1], 8, "flip")
    np.testing.assert_array_equal(predict_proba(model, x, 8, "flip"), flipped_input)  # mirror in, same out
    np.testing.assert_allclose(predict_proba(model, x, 8, "flip"),
                               0.5 * plain + 0.5 * predict_proba(model, x[:, :, ::-1], 8), rtol=1e-12)
    assert not np.allclose(predict_proba(model, x, 8, "flip"), plain)
    np.testing.assert_array_equal(predict_proba(model, x, 8), plain)  # augmentation inactive at inference
    weights = [w for w, _ in tta_views(x, "flip_translate")]
    assert abs(sum(weights) - 1) < 1e-12 and len(weights) == 6


def test_triangular_schedule_rises_then_falls():
    schedule = TriangularSchedule(peak=1.0, total=100, warmup=20, start=0.2, end=0.0)
    lr = [float(schedule(step)) for step in (0, 10, 20, 60, 100, 150)]
    np.testing.assert_allclose(lr, [0.2, 0.6, 1.0, 0.5, 0.0, 0.0], atol=1e-6)
    no_warmup = TriangularSchedule(peak=1.0, total=10, warmup=0, start=0.2, end=0.5)
    np.testing.assert_allclose([float(no_warmup(s)) for s in (0, 5, 10, 20)], [1.0, 0.75, 0.5, 0.5], atol=1e-6)


def test_warmup_schedules_and_the_smoothed_loss_survive_a_save_and_load():
    from cifarx.training.lr_schedules import LinearWarmup
    from cifarx.training.optim import SparseSmoothedCrossentropy

    step = keras.optimizers.schedules.PiecewiseConstantDecay([10], [1.0, 0.5])
    for schedule in (LinearWarmup(step, 4), LinearWarmup(0.3, 4), TriangularSchedule(1.0, 50, 10)):
        optimizer = keras.optimizers.RMSprop(learning_rate=schedule)
        restored = keras.optimizers.RMSprop.from_config(optimizer.get_config())
        for s in (0, 2, 4, 12, 60):
            assert float(restored._learning_rate(s)) == pytest.approx(float(schedule(s)))
    np.testing.assert_allclose([float(LinearWarmup(step, 4)(s)) for s in (0, 2, 4, 12)], [0, 0.5, 1.0, 0.5])
    labels, probs = np.array([0, 2]), np.array([[0.7, 0.2, 0.1], [0.2, 0.2, 0.6]], dtype="float32")
    smoothed = SparseSmoothedCrossentropy(0.2)
    expected = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)(np.eye(3)[labels], probs)
    assert float(smoothed(labels, probs)) == pytest.approx(float(expected), rel=1e-6)
    assert SparseSmoothedCrossentropy.from_config(smoothed.get_config()).label_smoothing == 0.2


def test_lookahead_resets_the_weights_to_a_growing_average_every_k_steps_and_survives_a_save():
    from cifarx.training.optim import LookaheadSGD

    def steps(optimizer, var, n):
        seen = []
        for _ in range(n):
            optimizer.apply_gradients([(keras.ops.ones((1,)), var)])
            seen.append(float(keras.ops.convert_to_numpy(var)[0]))
        return seen

    var = keras.Variable([0.0])
    optimizer = LookaheadSGD(learning_rate=1.0, momentum=0.0, nesterov=False, lookahead_every=2,
                             lookahead_decay=0.5, total_steps=4)
    # Plain SGD moves the weight by -1 a step; the average starts at the first step's weight (-1).
    # Step 2: d = 0.5 * (2/4)^3 = 1/16: average = -1/16 - 15/16 * 2 = -1.9375, weight reset to it.
    # Step 3: plain SGD again (the average waits). Step 4: SGD gives -3.9375, d = 0.5: the average
    # (and the weight) become 0.5 * -1.9375 + 0.5 * -3.9375 = -2.9375.
    np.testing.assert_allclose(steps(optimizer, var, 4), [-1.0, -1.9375, -2.9375, -2.9375])
    restored = LookaheadSGD.from_config(optimizer.get_config())
    assert (restored.lookahead_every, restored.lookahead_decay, restored.total_steps) == (2, 0.5, 4)
    assert restored.use_ema and restored.ema_overwrite_frequency == 2


def test_lookahead_is_built_for_the_run_s_length_and_must_score_the_last_weights():
    from cifarx.commands.train import validate_train
    from cifarx.config.build import instantiate
    from cifarx.errors import ConfigError
    from cifarx.training.optim import build_optimizer

    cfg = compose("train", ["optimizer=sgd_lookahead", "optimizer.weight_decay=0.01", "optimizer.momentum=0",
                            "trainer.evaluate=last", "trainer.epochs=3"])
    validate_train(cfg)  # SGD's own arguments (weight_decay, learning_rate) are the subclass's too
    optimizer = build_optimizer(cfg.optimizer, instantiate(cfg.schedule, "schedule"), steps_per_epoch=10, epochs=3)
    assert optimizer.total_steps == 30 and optimizer.weight_decay == 0.01 and optimizer.lookahead_every == 5
    assert optimizer.momentum == 0.0  # an int from the command line, a float for SGD (its parent's argument)
    cfg.optimizer.lookahead_every = 0
    with pytest.raises(ConfigError, match="optimizer.lookahead_every=0 must be an integer >= 1"):
        validate_train(cfg)
    cfg.optimizer.lookahead_every = 5
    cfg.trainer.evaluate = "best"
    with pytest.raises(ConfigError, match="best.keras would hold weights between resets"):
        validate_train(cfg)


def test_early_stopping_in_a_resumed_run_continues_from_the_history():
    from cifarx.training.callbacks import ResumableEarlyStopping

    stop = ResumableEarlyStopping([0.1, 0.5, 0.4, 0.3], monitor="val_accuracy", mode="max", patience=3)
    stop.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    stop.on_train_begin()
    assert (stop.best, stop.best_epoch, stop.wait) == (0.5, 1, 2)
    stop.on_epoch_end(4, {"val_accuracy": 0.45})  # the third epoch without improvement: stop
    assert stop.model.stop_training


@pytest.mark.slow
def test_ema_weights_are_saved_and_evaluated_and_extract_and_classic_work(tmp_path):
    from cifarx.commands.classic import run_classic
    from cifarx.commands.extract import run_extract
    from cifarx.commands.train import run_train

    root = write_batches_dir(tmp_path / "data", train_per_class=12, test_per_class=4)
    overrides = [*tiny_train_overrides(root, tmp_path / "cache", epochs=2), "model=airbench", "model.width=0.125",
                 "model.whiten_images=50", "optimizer=sgd", "optimizer.learning_rate=0.1", "optimizer.use_ema=true", "optimizer.ema_momentum=0.9",
                 "schedule=onecycle", "trainer.label_smoothing=0.2", "trainer.evaluate=last", "tta=flip"]
    overrides = [o for o in overrides if not o.startswith("model.filters")]
    cfg = compose("train", overrides)
    run = RunDir(tmp_path / "train", "train")
    run.begin(cfg)
    metrics = run_train(cfg, run)
    run.set_status("completed")
    assert metrics["tta"] == "flip" and metrics["evaluated_checkpoint"] == "last"
    saved, last = load_model(run.file("model.keras")), load_model(run.file("last.keras"))
    assert getattr(saved, "optimizer", None) is None and last.optimizer is not None  # model.keras: no optimizer state
    averages = last.optimizer._model_variables_moving_average  # aligned with the trainable weights
    assert len(averages) == len(saved.trainable_weights)
    for weight, average in zip(saved.trainable_weights, averages):  # model.keras holds the averages
        np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), keras.ops.convert_to_numpy(average),
                                   rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
               for a, b in zip(saved.trainable_weights, last.trainable_weights))
    from cifarx.commands.evaluate import run_evaluate

    again = compose("evaluate", [f"run={run.path}"])  # model.keras and the run's own tta by default
    reeval = RunDir(tmp_path / "evaluate", "evaluate")
    reeval.begin(again)
    scored = run_evaluate(again, reeval)
    assert scored["tta"] == "flip" and scored["test_accuracy"] == metrics["test_accuracy"]
    assert scored["test_loss"] == metrics["test_loss"]

    ex_cfg = compose("extract", [f"run={run.path}"])
    extract = RunDir(tmp_path / "extract", "extract")
    extract.begin(ex_cfg)
    features = run_extract(ex_cfg, extract)
    extract.set_status("completed")
    assert features["layer"] == "features" and features["dim"] == 32
    cl_cfg = compose("classic", [f"features={extract.path}", "clf=logreg"])
    classic = RunDir(tmp_path / "classic", "classic")
    classic.begin(cl_cfg)
    assert 0.0 <= run_classic(cl_cfg, classic)["test_accuracy"] <= 1.0
