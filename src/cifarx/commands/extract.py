"""`cifarx extract`: a trained network, cut before its classifier, as a feature extractor.

Preprocessing lives inside the saved model, so features see exactly the training-time input
pipeline; augmentation layers are inactive at inference. Features are written batch by batch
into ``.npy`` files whose space is reserved first (renamed into place when complete), so memory
stays bounded and a full disk is reported before the work.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from cifarx.config.validate import validate_data
from cifarx.errors import ConfigError, RunError, require
from cifarx.run.rundir import RunDir, atomic_path, check_keras_file, read_json, require_run

log = logging.getLogger("cifarx")

FEATURES_META = "features.json"


def feature_layer(model, name: str | None):
    """The named layer, or by default the one right before the final classifier (the last Dense
    layer, whatever scaling or softmax follows it)."""
    import keras

    names = [layer.name for layer in model.layers]
    if name is None:
        dense = [i for i, layer in enumerate(model.layers) if isinstance(layer, keras.layers.Dense)]
        return model.layers[(dense[-1] if dense else len(model.layers) - 1) - 1]
    if name not in names:
        raise ConfigError(f"layer='{name}' is not a layer of this model; choose one of: {', '.join(names[1:])}")
    return model.get_layer(name)


def write_features(extractor, x: np.ndarray, path: Path, batch_size: int, label: str) -> tuple[int, ...]:
    """Run ``extractor`` over ``x`` in batches, writing into ``path`` as it goes."""
    from cifarx.console import progress_steps

    n = len(x)
    first = np.asarray(extractor.predict_on_batch(x[:1]))
    shape = (n, int(np.prod(first.shape[1:])))
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        # Plain writes, never a memory map: a page of a mapped file the disk has no room for is a
        # SIGBUS (no message, no cleanup); a write() says ENOSPC, which the run reports in one line.
        np.lib.format.write_array_header_1_0(
            out, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": shape})
        _preallocate(out, out.tell() + shape[0] * shape[1] * 4, path)  # a full disk fails here, before the work
        start = time.perf_counter()
        for i in progress_steps(range(0, n, batch_size), f"extracting {label} (batches of {batch_size})"):
            feats = np.asarray(extractor.predict_on_batch(x[i:i + batch_size]), dtype=np.float32)
            if feats.size != len(feats) * shape[1]:
                raise RunError(f"layer output changed size between batches ({feats.shape[1:]} vs {first.shape[1:]})")
            out.write(np.ascontiguousarray(feats.reshape(len(feats), -1)).data)
    log.info("%s: %d x %d features in %.1fs", label, *shape, time.perf_counter() - start)
    return shape


def _preallocate(f, size: int, name: Path) -> None:
    """Reserve ``size`` bytes for ``f`` (ENOSPC now rather than after minutes of work), reported as
    ``name``'s error; where the file system cannot reserve, the writes still report a full disk."""
    import errno
    import os

    f.flush()
    try:
        os.posix_fallocate(f.fileno(), 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
            raise OSError(exc.errno, exc.strerror, str(name)) from None


def _source(cfg):
    """(model path, train config or None, source run dir or None)."""
    if cfg.run is not None:
        run = Path(str(cfg.run)).expanduser().resolve()  # a finished train run: checked by validate_extract
        return run / f"{cfg.checkpoint}.keras", OmegaConf.load(run / "config.yaml"), run
    path = Path(str(cfg.model_path)).expanduser().resolve()
    if not path.is_file():
        raise RunError(f"model_path='{cfg.model_path}' is not a file")
    return path, None, None


def validate_extract(cfg: DictConfig) -> None:
    require((cfg.run is None) != (cfg.model_path is None),
            "give exactly one of run=<train run dir> or model_path=<file.keras>")
    if cfg.run is not None:
        require_run(cfg.run, "train", needs=(f"{cfg.checkpoint}.keras",))
    else:
        require(Path(str(cfg.model_path)).expanduser().is_file(), f"model_path='{cfg.model_path}' is not a file")
        if str(cfg.model_path).endswith(".keras"):
            check_keras_file(Path(str(cfg.model_path)).expanduser(), f"model_path='{cfg.model_path}'")
    validate_data(cfg.data)


def run_extract(cfg, run: RunDir) -> dict[str, Any]:
    import keras

    from cifarx.data import load_dataset
    from cifarx.models import load_model

    model_path, train_cfg, source = _source(cfg)
    data_cfg = train_cfg.data if train_cfg is not None else cfg.data
    if train_cfg is not None and cfg.data.root is not None:  # the run's images, where they are now
        data_cfg = OmegaConf.merge(data_cfg, {"root": cfg.data.root})
    seed = int(train_cfg.seed) if train_cfg is not None else int(cfg.seed)
    data = load_dataset(data_cfg, seed)
    model = load_model(model_path)
    layer = feature_layer(model, cfg.layer)
    extractor = keras.Model(model.input, layer.output)
    splits = {}
    for split, (x, y) in data.splits().items():
        shape = write_features(extractor, x, run.target(f"features_{split}.npy"), int(cfg.batch_size), split)
        with atomic_path(run.target(f"labels_{split}.npy")) as tmp:
            np.save(tmp, y.astype(np.int64), allow_pickle=False)
        splits[split] = shape[0]
    dim = shape[1]
    source_metrics = read_json(source / "metrics.json") if source and (source / "metrics.json").exists() else {}
    meta = {
        "layer": layer.name, "dim": dim, "splits": splits, "class_names": data.class_names,
        "model_path": str(model_path), "source_run": str(source) if source else None,
        "source_model": train_cfg.model.name if train_cfg is not None else model.name,
        "source_test_accuracy": source_metrics.get("test_accuracy"),
        "source_config": OmegaConf.to_container(train_cfg, resolve=True) if train_cfg is not None else None,
        "data": data.source,
    }
    run.write_json(FEATURES_META, meta)
    run.write_metrics({"layer": layer.name, "dim": dim, "splits": splits,
                       "source_test_accuracy": meta["source_test_accuracy"]})
    log.info("features of layer '%s' (%d-d) in %s", layer.name, dim, run.path)
    return meta
