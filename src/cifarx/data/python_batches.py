"""CIFAR-10's python batches: ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``,
``batches.meta``), or ``cifar-10-python.tar.gz`` read in place (``cifarx.data.sources``
re-exports all of it). Each file's size is checked (from its directory entry or tar header) before
it is read, so a damaged or hostile archive cannot make a load take unbounded memory."""

from __future__ import annotations

import os
import pickle
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cifarx.data.raw import RawData, check_size, printable
from cifarx.errors import DataError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
# Bytes of one batch file, checked before it is read: a real CIFAR-10 batch is 31 MB (10000 images of
# 3073 bytes, pickled); four times that leaves room for re-pickled copies, not for a bomb.
MAX_BATCH_BYTES = 128 << 20


def _unpickle(blob: bytes, name: str) -> dict:
    try:
        return pickle.loads(blob, encoding="bytes")
    except Exception as exc:
        raise DataError(f"corrupt CIFAR-10 batch file '{name}': {type(exc).__name__}") from exc


def _decode_batch(entry: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.asarray(entry[b"data"], dtype=np.uint8)
        labels = np.asarray(entry.get(b"labels", entry.get(b"fine_labels")), dtype=np.int64)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except Exception as exc:
        raise DataError(f"corrupt CIFAR-10 batch file '{name}': {exc}") from exc
    return np.ascontiguousarray(images), labels


def _from_batches(read: Callable[[str], bytes], where: str) -> RawData:
    xs, ys = [], []
    for name in TRAIN_BATCHES:
        x, y = _decode_batch(_unpickle(read(name), name), name)
        xs.append(x)
        ys.append(y)
    x_test, y_test = _decode_batch(_unpickle(read("test_batch"), "test_batch"), "test_batch")
    meta = _unpickle(read("batches.meta"), "batches.meta")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])]
    if not names:
        raise DataError(f"{where}: batches.meta has no label_names")
    return RawData(np.concatenate(xs), np.concatenate(ys), x_test, y_test, names).check(where)


def load_batches_dir(path: Path) -> RawData:
    where = printable(str(path))

    def read(name: str) -> bytes:
        f = path / name
        if not f.exists():
            raise DataError(f"{where} is missing '{name}' (a cifar-10-batches-py directory needs "
                            f"{', '.join(TRAIN_BATCHES)}, test_batch and batches.meta)")
        with open(f, "rb") as fh:
            check_size(f"{where}/{name}", os.fstat(fh.fileno()).st_size, MAX_BATCH_BYTES, "one CIFAR-10 batch file")
            return fh.read(MAX_BATCH_BYTES + 1)  # bounded even if it grows meanwhile (then it fails to unpickle)

    return _from_batches(read, where)


def load_tarball(path: Path) -> RawData:
    where = printable(str(path))
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

            def read(name: str) -> bytes:
                if name not in members:
                    raise DataError(f"{where} has no '{name}' (is it cifar-10-python.tar.gz?)")
                member = members[name]  # its size is the header's: extractfile never returns more
                check_size(f"{where}:{member.name}", member.size, MAX_BATCH_BYTES, "one CIFAR-10 batch file")
                return tar.extractfile(member).read()

            return _from_batches(read, where)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"cannot read archive '{where}': {printable(str(exc))}") from exc
