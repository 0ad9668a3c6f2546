"""Config schemas of the commands and of the groups that build nothing (data, trainer, logger),
registered with Hydra's ConfigStore.

YAML under ``conf/`` is what users edit; the dataclasses here are the schemas behind it, so a
misspelled key, a wrong type or an unknown choice fails at composition time. Groups that build an
object (model, optimizer, schedule) are schemaed by the class they name (cifarx.config.build);
the range checks types cannot express are in each dataclass's ``__post_init__``, with one-line
messages (cifarx.config.validate runs them once, with ``OmegaConf.to_object``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from cifarx.errors import require

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
SEED_MAX = 2**32 - 1  # NumPy's and scikit-learn's limit for a seed


def _check_seed(seed: int) -> None:
    require(0 <= int(seed) <= SEED_MAX, f"seed={seed} must be an integer in [0, {SEED_MAX}]")


def _positive(prefix: str, node, keys: tuple[str, ...]) -> None:
    for key in keys:
        value = getattr(node, key)
        require(value is not None and value > 0, f"{prefix}{key}={value} must be a positive integer")


def config_dir() -> Path:
    """The directory holding the YAML configs: inside the wheel, or the repo's ``conf/``."""
    packaged = Path(__file__).resolve().parents[1] / "conf"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "conf"


class Normalize(StrEnum):
    none = "none"  # raw 0..255 pixel values, as the report's first run
    scale = "scale"  # divide by 255
    zscore = "zscore"  # per-channel mean/std from the training split only


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


class Fill(StrEnum):
    constant = "constant"  # data.augment.fill_value
    reflect = "reflect"  # the image mirrored at its edge (airbench's reflect-padded crop)


@dataclass
class AugmentConfig:
    enabled: bool = False
    flip: bool = True  # random horizontal flip
    shift: float = 0.125  # max shift as a fraction of height/width (0.125 of 32 = 4 px)
    fill_value: float = 0.0  # constant fill for shifted-in pixels, after normalisation
    fill: Fill = Fill.constant  # what a shift brings in: fill_value, or the image mirrored at its edge
    alternate_flip: bool = False  # with flip: each epoch mirrors exactly the images the one before did not (airbench94)

    def __post_init__(self) -> None:
        require(0.0 <= self.shift < 0.5, f"data.augment.shift={self.shift} must be in [0, 0.5)")


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

    def __post_init__(self) -> None:
        require(0.0 <= self.val_fraction < 1.0, f"data.val_fraction={self.val_fraction} must be in [0, 1)")
        for key in ("max_train", "max_test"):
            value = getattr(self, key)
            require(value is None or value > 0, f"data.{key}={value} must be a positive count or null")


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
    register_as: Optional[str] = None  # also register the logged model under this name in MLflow's registry
    http_timeout: int = 10
    http_retries: int = 2

    def __post_init__(self) -> None:
        if self.name != LoggerName.mlflow:
            return
        require(self.http_timeout > 0 and self.http_retries >= 0,
                f"logger.http_timeout={self.http_timeout} must be > 0 and logger.http_retries={self.http_retries} >= 0")
        require(not self.register_as or self.log_model,
                f"logger.register_as={self.register_as} registers the logged model: it needs logger.log_model=true")


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
    run_eagerly: bool = False  # each step as plain Python, never traced (debugging; faster only on a few images)
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
    drop_last: bool = False  # end each epoch at its last full batch: one batch shape, compiled once (airbench)
    compile_cache: bool = True  # JAX: keep compiled steps in a per-user cache, so a second run compiles nothing
    compile_cache_dir: Optional[str] = None  # JAX's compilation cache; null: $XDG_CACHE_HOME/cifarx/jax (~/.cache/cifarx/jax)

    def __post_init__(self) -> None:
        _positive("trainer.", self, ("epochs", "batch_size"))
        require(self.early_stopping is None or self.early_stopping > 0,
                f"trainer.early_stopping={self.early_stopping} must be a positive patience or null")
        require(self.precision in PRECISIONS,
                f"trainer.precision={self.precision!r} is not one of: {', '.join(PRECISIONS)}")
        require(self.jit_compile in ("auto", True, False),
                f"trainer.jit_compile={self.jit_compile!r} is not one of: auto, true, false")
        for key in ("threads", "inter_op_threads", "cpu_devices", "eval_batch_size"):
            value = getattr(self, key)
            require(value is None or value > 0, f"trainer.{key}={value} must be positive or null")
        require(self.time_budget is None or 0 < self.time_budget < math.inf,
                f"trainer.time_budget={self.time_budget} must be a finite number of seconds > 0, or null (no budget)")
        for key in ("steps_per_execution", "budget_probe_steps", "checkpoint_every"):
            require(getattr(self, key) >= 1, f"trainer.{key}={getattr(self, key)} must be >= 1")
        require(0 <= self.time_budget_reserve < 1,
                f"trainer.time_budget_reserve={self.time_budget_reserve} must be in [0, 1)")
        require(0 <= self.label_smoothing < 1, f"trainer.label_smoothing={self.label_smoothing} must be in [0, 1)")


@dataclass
class TrainConfig:
    model: Any = MISSING  # conf/model: {_target_: an Architecture class, its fields} (cifarx.models)
    data: DataConfig = MISSING
    optimizer: Any = MISSING  # conf/optimizer: {_target_: a Keras optimizer class, its arguments}
    schedule: Any = MISSING  # conf/schedule: {_target_: a cifarx.training.schedules class, its fields}
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 42
    experiment_name: Optional[str] = None
    resume: Optional[str] = None  # continue this interrupted (or finished, with more epochs) train run
    resume_new_data: bool = False  # let resume= go on although the data's content changed (provenance keeps both)
    objective: str = "val_accuracy"  # the metrics.json key returned to Hydra sweepers (e.g. Optuna)
    tta: TTA = TTA.none  # test-time augmentation of the val/test predictions
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    reference_accuracy: Optional[float] = None  # the report's test accuracy for this experiment (compare shows it)
    figures: bool = True  # PNG figures (confusion matrices, curves, misclassified images); ~1 s of matplotlib

    def __post_init__(self) -> None:
        _check_seed(self.seed)


class SavedModel(StrEnum):
    model = "model"  # the model the run evaluated (best or last; with optimizer.use_ema, the averaged weights)
    best = "best"
    last = "last"


@dataclass
class MovedData:
    root: Optional[str] = None  # read the run's images from here instead (the data moved, or another machine)


@dataclass
class EvaluateConfig:
    run: str = MISSING  # a train run directory
    checkpoint: SavedModel = SavedModel.model
    batch_size: int = 256
    seed: int = 42
    tta: Optional[TTA] = None  # test-time augmentation of the val/test predictions; null: the run's own
    data: MovedData = field(default_factory=MovedData)  # data.root: the run's images, where they are now
    figures: bool = True  # PNG figures (confusion matrices, misclassified images)
    compile_cache: bool = True  # JAX: reuse the compiled prediction step of earlier runs (trainer.compile_cache)
    compile_cache_dir: Optional[str] = None  # null: $XDG_CACHE_HOME/cifarx/jax (~/.cache/cifarx/jax)

    def __post_init__(self) -> None:
        _check_seed(self.seed)
        _positive("", self, ("batch_size",))


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
    data: DataConfig = MISSING  # with run=, only data.root is read: the run's images, where they are now
    seed: int = 42

    def __post_init__(self) -> None:
        _check_seed(self.seed)
        _positive("", self, ("batch_size",))


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
    figures: bool = True  # PNG figures (confusion matrices, curves, misclassified images); ~1 s of matplotlib

    def __post_init__(self) -> None:
        _check_seed(self.seed)
        require(self.pca is None or self.pca > 0, f"pca={self.pca} must be a positive number of components or null")
        require(self.max_train is None or self.max_train > 0, f"max_train={self.max_train} must be positive or null")
        require(self.score_train_max is None or self.score_train_max > 0,
                f"score_train_max={self.score_train_max} must be positive or null")
        require(self.predict_chunk > 0, f"predict_chunk={self.predict_chunk} must be positive")


class ExportFormat(StrEnum):
    saved_model = "saved_model"  # TensorFlow SavedModel (TF Serving, tf.saved_model.load)
    onnx = "onnx"  # ONNX (onnxruntime): cifarx[onnx]
    litert = "litert"  # LiteRT, formerly TensorFlow Lite (.tflite): cifarx[litert]
    openvino = "openvino"  # OpenVINO IR (.xml + .bin): cifarx[openvino]
    all = "all"  # every format above


class InputDType(StrEnum):
    uint8 = "uint8"  # NHWC images as stored: 0..255 integers
    float32 = "float32"  # NHWC 0..255 floats, rounded to uint8 inside the exported model


@dataclass
class ParityConfig:
    images: Optional[int] = None  # test images the check runs on (the first N); null: the whole test split
    min_agreement: float = 0.999  # share of images whose top-1 class must equal Keras'
    max_accuracy_gap: float = 0.001  # |accuracy - Keras' accuracy| allowed (0.001: 0.1 point)
    batch_size: int = 256  # images per call of the exported model

    def __post_init__(self) -> None:
        require(self.images is None or self.images > 0, f"parity.images={self.images} must be a positive count or null")
        require(0 < self.min_agreement <= 1, f"parity.min_agreement={self.min_agreement} must be in (0, 1]")
        require(0 <= self.max_accuracy_gap <= 1, f"parity.max_accuracy_gap={self.max_accuracy_gap} must be in [0, 1]")
        _positive("parity.", self, ("batch_size",))


@dataclass
class TimingConfig:
    warmup: int = 10  # untimed calls first (graph building, allocation, caches)
    calls: int = 100  # timed batch-1 calls: median and p90 latency
    batch_size: int = 256  # images per call for throughput
    batches: int = 8  # timed calls of batch_size images: throughput in images/s

    def __post_init__(self) -> None:
        _positive("timing.", self, ("calls", "batch_size", "batches"))
        require(self.warmup >= 0, f"timing.warmup={self.warmup} must be >= 0")


@dataclass
class ExportConfig:
    run: str = MISSING  # a train run directory
    checkpoint: SavedModel = SavedModel.model
    format: Optional[ExportFormat] = None  # null: saved_model, or all with benchmark=true
    input_dtype: InputDType = InputDType.uint8
    benchmark: bool = False  # time every exported format and Keras: benchmark.json, benchmark.md
    parity: ParityConfig = field(default_factory=ParityConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    data: MovedData = field(default_factory=MovedData)  # data.root: the run's images, where they are now
    seed: int = 42  # recorded with the run (export and its checks draw nothing at random)

    def __post_init__(self) -> None:
        _check_seed(self.seed)


@dataclass
class PredictData:
    other_sizes: Optional[OtherSizes] = None  # images that are not 32x32: refuse | pad | resize; null: the run's own


@dataclass
class PredictConfig:
    run: str = MISSING  # a train or classic run directory
    source: str = MISSING  # an image, a folder, a .zip, a glob pattern or a .txt list of paths
    checkpoint: SavedModel = SavedModel.model
    top_k: int = 5  # classes per image in predictions.csv (at most the run's class count)
    batch_size: int = 256
    tta: Optional[TTA] = None  # null: the run's own
    data: PredictData = field(default_factory=PredictData)
    contact_sheet: int = 32  # images in contact_sheet.png (the first ones); 0: none
    show: int = 10  # rows of predictions shown on the terminal
    figures: bool = True  # contact_sheet.png
    trust_pipeline: bool = False  # classic runs: unpickle a pipeline cifarx did not sign on this machine
    seed: int = 42  # recorded with the run (prediction itself draws nothing at random)

    def __post_init__(self) -> None:
        _check_seed(self.seed)
        _positive("", self, ("batch_size", "top_k"))
        for key in ("contact_sheet", "show"):
            require(getattr(self, key) >= 0, f"{key}={getattr(self, key)} must be 0 or more")


@dataclass
class DataStatsConfig:
    data: DataConfig = MISSING
    samples_per_class: int = 8
    seed: int = 42

    def __post_init__(self) -> None:
        _check_seed(self.seed)


@functools.cache  # Hydra's ConfigStore keeps them for the process: once is enough
def register_configs() -> None:
    """Primary schemas per command, and group schemas that the group YAML files extend
    (``- /schema_data@_here_``); kept outside the groups so they are not options."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="data_command_schema", node=DataStatsConfig)
    cs.store(name="extract_schema", node=ExtractConfig)
    cs.store(name="classic_schema", node=ClassicConfig)
    cs.store(name="predict_schema", node=PredictConfig)
    cs.store(name="export_schema", node=ExportConfig)
    cs.store(name="schema_clf", node=ClfConfig)
    cs.store(name="schema_data", node=DataConfig)
    cs.store(name="schema_logger", node=LoggerConfig)
