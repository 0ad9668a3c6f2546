"""Config schemas, registered with Hydra's ConfigStore, and the checks types cannot express.

YAML under ``conf/`` is what users edit; the dataclasses here are the schemas behind it, so a
misspelled key, a wrong type or an unknown choice fails at composition time. ``validate`` adds
the range checks (positive epochs, fractions in [0, 1), ...) with one-line messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from cifarx.errors import ConfigError


def config_dir() -> Path:
    """The directory holding the YAML configs: inside the wheel, or the repo's ``conf/``."""
    packaged = Path(__file__).resolve().parent / "conf"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "conf"


class Normalize(StrEnum):
    none = "none"  # raw 0..255 pixel values, as the report's first run
    scale = "scale"  # divide by 255
    zscore = "zscore"  # per-channel mean/std from the training split only


class OptimizerName(StrEnum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"
    rmsprop = "rmsprop"


class ScheduleName(StrEnum):
    constant = "constant"
    step = "step"
    plateau = "plateau"
    cosine = "cosine"
    onecycle = "onecycle"  # linear warm-up to the peak, then linear decay (triangular)


class Distribute(StrEnum):
    none = "none"
    mirrored = "mirrored"  # tf.distribute.MirroredStrategy over every local GPU (TensorFlow backend)


class Feed(StrEnum):
    auto = "auto"  # tf_data on TensorFlow, python elsewhere
    tf_data = "tf_data"  # batches sliced by tf.gather in C++ (TensorFlow backend only)
    python = "python"  # a keras.utils.PyDataset: one numpy slice per batch


class TTA(StrEnum):
    none = "none"
    flip = "flip"  # average of the image and its mirror image: exact, 2 passes
    flip_translate = "flip_translate"  # also 1-pixel shifts either way (reflect-padded): 4 passes


class Checkpoint(StrEnum):
    best = "best"
    last = "last"


@dataclass
class AugmentConfig:
    enabled: bool = False
    flip: bool = True  # random horizontal flip
    shift: float = 0.125  # max shift as a fraction of height/width (0.125 of 32 = 4 px)
    fill_value: float = 0.0  # constant fill for shifted-in pixels, after normalisation


class OtherSizes(StrEnum):
    refuse = "refuse"  # only 32x32 images (CIFAR-10's size)
    pad = "pad"  # centre smaller images on a black 32x32 canvas
    resize = "resize"  # scale any size to 32x32 (bilinear)


@dataclass
class DataConfig:
    root: Optional[str] = None  # null: Keras' download/cache; else a batches dir, tar.gz, image folder or zip
    cache_dir: str = "~/.cache/cifarx"
    val_fraction: float = 0.2
    max_train: Optional[int] = None  # stratified subset of the training pool (before the val split)
    max_test: Optional[int] = None
    normalize: Normalize = Normalize.zscore
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    other_sizes: OtherSizes = OtherSizes.refuse  # image-folder images that are not 32x32: refuse | pad | resize


@dataclass
class SimpleCNNConfig:
    name: str = "simple_cnn"
    filters: List[int] = field(default_factory=lambda: [16, 32, 64])  # per conv block
    width: float = 1.0  # multiplies every entry of filters (a single knob for searches)
    dropout: List[float] = field(default_factory=lambda: [0.25, 0.25])  # after block 2, in block 3
    l2: float = 0.0  # kernel weight decay; the report tried 0.01 and 0.001
    initializer: str = "he_normal"
    activation: str = "relu"


@dataclass
class AirbenchConfig:
    name: str = "airbench"
    widths: List[int] = field(default_factory=lambda: [64, 256, 256])  # per block (airbench94)
    width: float = 1.0  # multiplies every entry of widths (0.5 is the CPU size)
    convs_per_block: int = 2  # the first of each block is followed by a 2x2 max-pool
    whiten: bool = True  # frozen patch-whitening stem computed from training images
    whiten_kernel: int = 2  # patch size of the stem (2 x 2 x 3 -> 24 filters)
    whiten_eps: float = 5.0e-4  # added to the patch covariance's eigenvalues
    whiten_images: int = 5000  # training images the stem's statistics come from
    bn_momentum: float = 0.4  # Keras convention: weight of the old running statistics
    bn_epsilon: float = 1.0e-12
    bias_lr_scale: float = 64.0  # BatchNorm biases learn this many times faster (airbench's bias_scaler)
    activation: str = "gelu"
    logit_scale: float = 0.1111111111111111  # airbench's 1/9 on the logits


@dataclass
class HeadConfig:
    units: List[int] = field(default_factory=lambda: [1024, 512])
    dropout: float = 0.5
    batch_norm: bool = True


@dataclass
class FinetuneConfig:
    blocks: int = 0  # 0: no second stage; N: unfreeze the top N conv blocks of the base
    epochs: int = 0
    learning_rate: float = 1e-5


@dataclass
class VGGConfig:
    name: str = MISSING  # vgg16 | vgg19
    weights: Optional[str] = "imagenet"  # imagenet | null (random init) | path to a .h5/.keras file
    cut_at: Optional[str] = None  # base layer to stop at, e.g. block4_pool; null: whole base
    freeze: bool = True
    input_size: int = 32  # resize inside the model (e.g. 64, 128, 224)
    head: HeadConfig = field(default_factory=HeadConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


@dataclass
class OptimizerConfig:
    name: OptimizerName = OptimizerName.adam
    learning_rate: float = 1e-3
    momentum: float = 0.0  # sgd, rmsprop
    nesterov: bool = False  # sgd
    weight_decay: Optional[float] = None  # decoupled (AdamW-style) decay, applied by every Keras optimizer
    clipnorm: Optional[float] = None
    ema: Optional[float] = None  # keep an exponential moving average of the weights (momentum, e.g. 0.99)


@dataclass
class ScheduleConfig:
    name: ScheduleName = ScheduleName.constant
    boundaries: List[int] = field(default_factory=list)  # step: epochs where the rate changes
    factors: List[float] = field(default_factory=list)  # step: multipliers of learning_rate
    factor: float = 0.5  # plateau: multiply the rate by this
    patience: int = 2  # plateau: epochs without val_loss improvement
    min_lr: float = 1e-6  # plateau
    warmup_epochs: int = 0  # cosine, step, constant: linear warm-up from 0 over this many epochs
    alpha: float = 0.0  # cosine: final rate as a fraction of learning_rate
    warmup_fraction: float = 0.2  # onecycle: share of all steps spent rising to learning_rate
    start_factor: float = 0.2  # onecycle: first rate as a fraction of learning_rate
    end_factor: float = 0.0  # onecycle: last rate as a fraction of learning_rate


class LoggerName(StrEnum):
    none = "none"
    mlflow = "mlflow"


@dataclass
class LoggerConfig:
    name: LoggerName = LoggerName.none
    tracking_uri: Optional[str] = None  # null: the embedded SQLite store in ./outputs
    artifact_location: Optional[str] = None  # for a new experiment; null: ./outputs/mlartifacts (embedded)
    experiment: str = "cifarx"
    log_model: bool = True
    log_checkpoints: bool = False
    http_timeout: int = 10
    http_retries: int = 2


@dataclass
class TrainerConfig:
    epochs: int = 140
    batch_size: int = 64
    early_stopping: Optional[int] = None  # patience in epochs on val_accuracy; null: off
    tensorboard: bool = False
    evaluate: Checkpoint = Checkpoint.best  # which checkpoint the final evaluation uses
    jit_compile: Any = "auto"  # auto | true | false (XLA; 'auto' keeps it off on CPU)
    precision: str = "float32"  # float32 | mixed_float16 | mixed_bfloat16
    deterministic: bool = False  # TensorFlow op determinism (slower)
    threads: Optional[int] = None  # TensorFlow intra-op threads; null: all cores
    inter_op_threads: Optional[int] = None  # TensorFlow ops run at once; null: its own choice (fastest with the tf_data feed)
    steps_per_execution: int = 8  # training steps per compiled call (less Python overhead; same result)
    distribute: Distribute = Distribute.none
    cpu_devices: Optional[int] = None  # split the CPU into N logical devices (try distribution without GPUs)
    feed: Feed = Feed.auto  # how training batches reach the model (see cifarx.data.feed)
    eval_batch_size: Optional[int] = None  # validation/evaluation batch; null: max(256, batch_size)
    label_smoothing: float = 0.0  # cross-entropy against (1 - s) * one-hot + s / classes
    score_train: bool = True  # also score the training split at the end (a fit diagnostic; costs a pass)
    time_budget: Optional[float] = None  # seconds of wall time for the whole run: the epochs that fit (at most `epochs`)
    time_budget_reserve: float = 0.08  # share of the budget kept for what is not measured (saving, plots)
    budget_probe_steps: int = 24  # training steps timed to plan a time budget
    checkpoint_every: int = 1  # save last.keras every N epochs (and at the end); resume repeats the rest exactly


@dataclass
class TrainConfig:
    model: Any = MISSING
    data: DataConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    schedule: ScheduleConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 42
    experiment_name: Optional[str] = None
    resume: Optional[str] = None  # continue this interrupted (or finished, with more epochs) train run
    objective: str = "val_accuracy"  # the metrics.json key returned to Hydra sweepers (e.g. Optuna)
    tta: TTA = TTA.none  # test-time augmentation of the val/test predictions
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    reference_accuracy: Optional[float] = None  # the report's test accuracy for this experiment (compare shows it)


class SavedModel(StrEnum):
    model = "model"  # the model the run evaluated (best or last; with optimizer.ema, the averaged weights)
    best = "best"
    last = "last"


@dataclass
class EvaluateConfig:
    run: str = MISSING  # a train run directory
    checkpoint: SavedModel = SavedModel.model
    batch_size: int = 256
    seed: int = 42
    tta: Optional[TTA] = None  # test-time augmentation of the val/test predictions; null: the run's own
    data_root: Optional[str] = None  # read the run's images from here instead (moved data)


class Scale(StrEnum):
    none = "none"
    standard = "standard"


@dataclass
class ExtractConfig:
    run: Optional[str] = None  # a train run directory ...
    model_path: Optional[str] = None  # ... or a saved .keras model (then `data` says which images)
    checkpoint: SavedModel = SavedModel.model
    layer: Optional[str] = None  # null: the layer right before the final classifier
    batch_size: int = 256
    data_root: Optional[str] = None  # read the run's images from here instead (moved data)
    data: DataConfig = MISSING
    seed: int = 42


@dataclass
class ClfConfig:
    name: str = MISSING
    estimator: Any = MISSING  # {_target_: sklearn class, **params}, built with hydra.utils.instantiate


@dataclass
class ClassicConfig:
    clf: ClfConfig = MISSING
    features: str = MISSING  # an extract run directory, or "pixels"
    data: DataConfig = MISSING  # used with features=pixels
    scale: Scale = Scale.none
    pca: Optional[int] = None
    max_train: Optional[int] = None  # stratified subsample of the training features
    score_train: bool = True  # also score the training split (a fit diagnostic; KNN/SVM predict slowly)
    score_train_max: Optional[int] = None  # score a stratified sample of this many training rows
    predict_chunk: int = 2000  # rows per predict call (progress is shown per chunk)
    pipeline: Optional[str] = None  # evaluate the fitted pipeline of this classic run instead of fitting
    trust_pipeline: bool = False  # unpickle a pipeline cifarx did not sign on this machine (runs its code)
    seed: int = 42
    objective: str = "val_accuracy"  # the metrics.json key returned to Hydra sweepers
    experiment_name: Optional[str] = None
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    reference_accuracy: Optional[float] = None  # the report's test accuracy for this experiment (compare shows it)


@dataclass
class DataStatsConfig:
    data: DataConfig = MISSING
    samples_per_class: int = 8
    seed: int = 42


def register_configs() -> None:
    """Primary schemas per command, and group schemas that the group YAML files extend
    (``- /schema_model_simple_cnn@_here_``); kept outside the groups so they are not options."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="data_command_schema", node=DataStatsConfig)
    cs.store(name="extract_schema", node=ExtractConfig)
    cs.store(name="classic_schema", node=ClassicConfig)
    cs.store(name="schema_clf", node=ClfConfig)
    cs.store(name="schema_data", node=DataConfig)
    cs.store(name="schema_model_simple_cnn", node=SimpleCNNConfig)
    cs.store(name="schema_model_vgg", node=VGGConfig)
    cs.store(name="schema_model_airbench", node=AirbenchConfig)
    cs.store(name="schema_optimizer", node=OptimizerConfig)
    cs.store(name="schema_schedule", node=ScheduleConfig)
    cs.store(name="schema_logger", node=LoggerConfig)


MODEL_NAMES = ("simple_cnn", "vgg16", "vgg19", "airbench")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


SEED_MAX = 2**32 - 1  # NumPy's and scikit-learn's limit for a seed


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate_logger(cfg: DictConfig) -> None:
    logger = cfg.get("logger")
    if logger is None or logger.name != LoggerName.mlflow:
        return
    _require(logger.http_timeout > 0 and logger.http_retries >= 0,
             f"logger.http_timeout={logger.http_timeout} must be > 0 and logger.http_retries={logger.http_retries} >= 0")
    from cifarx.tracking import require_mlflow

    require_mlflow()


def validate_seed(cfg: DictConfig) -> None:
    seed = cfg.get("seed")
    if seed is not None:
        _require(0 <= int(seed) <= SEED_MAX, f"seed={seed} must be an integer in [0, {SEED_MAX}]")


def validate_data(data: DataConfig | DictConfig) -> None:
    if data.root is not None:
        _require(Path(str(data.root)).expanduser().exists(),
                 f"data.root='{data.root}' does not exist (give a cifar-10-batches-py directory, "
                 "cifar-10-python.tar.gz, an image folder with train/ and test/, or a .zip of one)")
    _require(0.0 <= data.val_fraction < 1.0,
             f"data.val_fraction={data.val_fraction} must be in [0, 1)")
    for key in ("max_train", "max_test"):
        value = data[key]
        _require(value is None or value > 0, f"data.{key}={value} must be a positive count or null")
    aug = data.augment
    _require(0.0 <= aug.shift < 0.5, f"data.augment.shift={aug.shift} must be in [0, 0.5)")


def validate_evaluate(cfg: DictConfig) -> None:
    from cifarx.artifacts import require_run

    _require(not OmegaConf.is_missing(cfg, "run"),
             "no run given: `cifarx evaluate run=<train run dir>` (run directories are under outputs/train/)")
    _require(cfg.batch_size > 0, f"batch_size={cfg.batch_size} must be a positive integer")
    require_run(cfg.run, "train", needs=(f"{cfg.checkpoint}.keras",))
    if cfg.data_root is not None:
        _require(Path(str(cfg.data_root)).expanduser().exists(), f"data_root='{cfg.data_root}' does not exist")


def validate_extract(cfg: DictConfig) -> None:
    from cifarx.artifacts import require_run

    _require((cfg.run is None) != (cfg.model_path is None),
             "give exactly one of run=<train run dir> or model_path=<file.keras>")
    _require(cfg.batch_size > 0, f"batch_size={cfg.batch_size} must be a positive integer")
    if cfg.run is not None:
        require_run(cfg.run, "train", needs=(f"{cfg.checkpoint}.keras",))
    else:
        _require(Path(str(cfg.model_path)).expanduser().is_file(), f"model_path='{cfg.model_path}' is not a file")
        if str(cfg.model_path).endswith(".keras"):
            from cifarx.artifacts import check_keras_file

            check_keras_file(Path(str(cfg.model_path)).expanduser(), f"model_path='{cfg.model_path}'")
        validate_data(cfg.data)
    if cfg.data_root is not None:
        _require(Path(str(cfg.data_root)).expanduser().exists(), f"data_root='{cfg.data_root}' does not exist")


def validate_classic(cfg: DictConfig) -> None:
    _require(not OmegaConf.is_missing(cfg, "features"),
             "no features given: run `cifarx extract run=<train run dir>` first, then "
             "`cifarx classic features=<extract run dir>` (or features=pixels)")
    _require(cfg.pca is None or cfg.pca > 0, f"pca={cfg.pca} must be a positive number of components or null")
    _require(cfg.max_train is None or cfg.max_train > 0, f"max_train={cfg.max_train} must be positive or null")
    _require(cfg.score_train_max is None or cfg.score_train_max > 0,
             f"score_train_max={cfg.score_train_max} must be positive or null")
    _require(cfg.predict_chunk > 0, f"predict_chunk={cfg.predict_chunk} must be positive")
    _require(not (cfg.scale == Scale.standard and "StandardScaler" in str(cfg.clf.estimator)),
             f"clf={cfg.clf.name} already standardises its features (a StandardScaler in clf.estimator); "
             "scale=standard would do it twice: leave scale=none")
    if str(cfg.features) == "pixels":
        validate_data(cfg.data)
    else:
        _require(Path(str(cfg.features)).expanduser().is_dir(),
                 f"features='{cfg.features}' is not a directory; run `cifarx extract run=<train run dir>` "
                 "first, then `cifarx classic features=<extract run dir>` (or features=pixels)")


def validate_train(cfg: DictConfig) -> None:
    """Range and consistency checks that a schema cannot express; raises ConfigError."""
    if cfg.get("resume") is not None:
        from cifarx.artifacts import require_run
        from cifarx.resume import RESUMABLE

        require_run(cfg.resume, "train", needs=("last.keras", "history.csv"), statuses=RESUMABLE)
    t = cfg.trainer
    _require(t.epochs > 0, f"trainer.epochs={t.epochs} must be a positive integer")
    _require(t.batch_size > 0, f"trainer.batch_size={t.batch_size} must be a positive integer")
    _require(t.early_stopping is None or t.early_stopping > 0,
             f"trainer.early_stopping={t.early_stopping} must be a positive patience or null")
    _require(t.precision in PRECISIONS,
             f"trainer.precision={t.precision!r} is not one of: {', '.join(PRECISIONS)}")
    _require(t.jit_compile in ("auto", True, False),
             f"trainer.jit_compile={t.jit_compile!r} is not one of: auto, true, false")
    _require(t.threads is None or t.threads > 0, f"trainer.threads={t.threads} must be positive")
    _require(t.inter_op_threads is None or t.inter_op_threads > 0,
             f"trainer.inter_op_threads={t.inter_op_threads} must be positive or null")
    _require(t.steps_per_execution > 0, f"trainer.steps_per_execution={t.steps_per_execution} must be positive")
    _require(t.cpu_devices is None or t.cpu_devices > 0, f"trainer.cpu_devices={t.cpu_devices} must be positive")
    _require(t.eval_batch_size is None or t.eval_batch_size > 0,
             f"trainer.eval_batch_size={t.eval_batch_size} must be positive or null")
    validate_data(cfg.data)
    _require(cfg.model.name in MODEL_NAMES,
             f"model.name={cfg.model.name!r} is not one of: {', '.join(MODEL_NAMES)}")
    opt = cfg.optimizer
    _require(opt.learning_rate > 0, f"optimizer.learning_rate={opt.learning_rate} must be > 0")
    _require(opt.momentum >= 0, f"optimizer.momentum={opt.momentum} must be >= 0")
    sch = cfg.schedule
    if sch.name == ScheduleName.step:
        _require(len(sch.factors) == len(sch.boundaries) + 1,
                 f"schedule.factors needs one more entry than schedule.boundaries "
                 f"(got {len(sch.factors)} factors for {len(sch.boundaries)} boundaries)")
        _require(list(sch.boundaries) == sorted(set(sch.boundaries)) and all(b > 0 for b in sch.boundaries),
                 f"schedule.boundaries={list(sch.boundaries)} must be increasing positive epochs")
    if sch.name == ScheduleName.plateau:
        _require(0 < sch.factor < 1, f"schedule.factor={sch.factor} must be in (0, 1)")
        _require(cfg.data.val_fraction > 0, "schedule=plateau watches val_loss: set data.val_fraction > 0")
    if sch.name in (ScheduleName.plateau, ScheduleName.onecycle):
        _require(sch.warmup_epochs == 0, f"schedule.warmup_epochs={sch.warmup_epochs} does nothing with "
                 f"schedule={sch.name} (onecycle warms up by schedule.warmup_fraction)")
    if sch.name in (ScheduleName.cosine, ScheduleName.step, ScheduleName.constant):
        _require(0 <= sch.warmup_epochs < t.epochs,
                 f"schedule.warmup_epochs={sch.warmup_epochs} must be in [0, trainer.epochs)")
    if sch.name == ScheduleName.onecycle:
        _require(0 <= sch.warmup_fraction < 1, f"schedule.warmup_fraction={sch.warmup_fraction} must be in [0, 1)")
        _require(0 <= sch.start_factor <= 1, f"schedule.start_factor={sch.start_factor} must be in [0, 1]")
        _require(0 <= sch.end_factor <= 1, f"schedule.end_factor={sch.end_factor} must be in [0, 1]")
    _require(t.time_budget is None or t.time_budget > 0, f"trainer.time_budget={t.time_budget} must be > 0 seconds or null")
    _require(0 <= t.time_budget_reserve < 1, f"trainer.time_budget_reserve={t.time_budget_reserve} must be in [0, 1)")
    _require(t.budget_probe_steps >= 1, f"trainer.budget_probe_steps={t.budget_probe_steps} must be >= 1")
    _require(t.checkpoint_every >= 1, f"trainer.checkpoint_every={t.checkpoint_every} must be >= 1")
    _require(0 <= t.label_smoothing < 1, f"trainer.label_smoothing={t.label_smoothing} must be in [0, 1)")
    if opt.ema is not None:
        _require(0 < opt.ema < 1, f"optimizer.ema={opt.ema} must be in (0, 1) or null")
        _require(t.evaluate == Checkpoint.last,
                 "optimizer.ema averages the weights only when training ends, so best.keras would hold raw "
                 "weights: set trainer.evaluate=last")
    if cfg.model.name in ("vgg16", "vgg19"):
        m = cfg.model
        _require(m.input_size >= 32, f"model.input_size={m.input_size} must be >= 32 (VGG's minimum)")
        _require(0 <= m.head.dropout < 1, f"model.head.dropout={m.head.dropout} must be in [0, 1)")
        _require(m.finetune.blocks >= 0 and m.finetune.epochs >= 0,
                 "model.finetune.blocks and model.finetune.epochs must be >= 0")
        _require((m.finetune.blocks > 0) == (m.finetune.epochs > 0),
                 "model.finetune.blocks and model.finetune.epochs must both be 0 or both be positive")
        _require(t.time_budget is None or m.finetune.blocks == 0,
                 "trainer.time_budget plans one training stage; with model.finetune set trainer.epochs instead")
    elif cfg.model.name == "airbench":
        m = cfg.model
        _require(len(m.widths) > 0 and all(w > 0 for w in m.widths) and m.width > 0,
                 f"model.widths={list(m.widths)} and model.width={m.width} must be positive")
        _require(m.convs_per_block >= 1, f"model.convs_per_block={m.convs_per_block} must be >= 1")
        _require(m.whiten_kernel >= 1 and m.whiten_images >= 2,
                 f"model.whiten_kernel={m.whiten_kernel} must be >= 1 and model.whiten_images={m.whiten_images} >= 2")
        _require(0 <= m.bn_momentum < 1, f"model.bn_momentum={m.bn_momentum} must be in [0, 1)")
        _require(m.bias_lr_scale > 0, f"model.bias_lr_scale={m.bias_lr_scale} must be > 0")
        _require(m.whiten_eps >= 0, f"model.whiten_eps={m.whiten_eps} must be >= 0")
        _require(m.bn_epsilon > 0, f"model.bn_epsilon={m.bn_epsilon} must be > 0")
        _require(m.logit_scale > 0, f"model.logit_scale={m.logit_scale} must be > 0")
    else:
        _require(all(0 <= d < 1 for d in cfg.model.dropout),
                 f"model.dropout={list(cfg.model.dropout)} must be in [0, 1)")
        _require(cfg.model.l2 >= 0, f"model.l2={cfg.model.l2} must be >= 0")
        _require(cfg.model.width > 0, f"model.width={cfg.model.width} must be > 0")
