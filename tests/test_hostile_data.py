"""Hostile and odd data on disk: huge members refused unread, 16-bit images, skipped files reported,
non-UTF-8 file names, classes too small for a stratified split. Each loads or fails in one line."""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tarfile
import zipfile
import zlib

import numpy as np
import pytest
from omegaconf import OmegaConf

from cifarx.data import image_folders, load_dataset, load_raw, python_batches
from cifarx.data.sources import MAX_IMAGE_BYTES, decode_image, load_path
from cifarx.errors import DataError
from conftest import write_batches_dir, write_image_dir, write_tarball, write_zip


def data_cfg(root, cache, **kw):
    base = {"root": str(root), "cache_dir": str(cache), "val_fraction": 0.2, "max_train": None, "max_test": None}
    return OmegaConf.create({**base, **kw})


def _png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes = b"") -> bytes:
    """A PNG from its chunks; ``rows`` (filter byte + pixels per row) empty: a header-only file."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    text.encode("utf-8")  # printable: no surrogate escapes
    return text


# -- 1. bounded memory ----------------------------------------------------------------------


def test_a_zip_member_over_the_byte_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    archive = write_zip(tmp_path, train_per_class=1, test_per_class=1)
    size = MAX_IMAGE_BYTES + (1 << 20)
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as zf, zf.open("train/cat/0000a.png", "w") as f:
        for _ in range(size >> 20):  # streamed zeros: the archive grows by ~70 KB, the test's memory by 1 MB
            f.write(bytes(1 << 20))
    assert archive.stat().st_size < 1 << 20
    real_open = zipfile.ZipFile.open

    def guarded_open(self, name, *args, **kwargs):
        assert getattr(name, "filename", name) != "train/cat/0000a.png", "the oversized member was read"
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", guarded_open)
    with pytest.raises(DataError) as exc:
        load_path(archive)
    assert f"'train/cat/0000a.png' is 65.0 MiB ({size} bytes), over the 64.0 MiB limit" in _one_line(exc)


def test_an_image_file_over_the_byte_limit_is_refused_from_its_size(tmp_path):
    root = write_image_dir(tmp_path, train_per_class=1, test_per_class=1)
    with open(root / "train" / "cat" / "0000a.png", "wb") as f:
        f.truncate(3 << 29)  # a sparse 1.5 GiB file: no disk used, and it is never read
    with pytest.raises(DataError) as exc:
        load_path(root)
    assert f"'train/cat/0000a.png' is 1.5 GiB ({3 << 29} bytes), over the 64.0 MiB limit" in _one_line(exc)


@pytest.mark.parametrize("writer", [write_tarball, write_batches_dir])
def test_a_batch_over_the_byte_limit_is_refused_before_it_is_read(tmp_path, monkeypatch, writer):
    root = writer(tmp_path)
    monkeypatch.setattr(python_batches, "MAX_BATCH_BYTES", 10_000)  # the test's batches are ~60 KB
    real_extract = tarfile.TarFile.extractfile

    def guarded_extract(self, member):
        assert member.size <= 10_000, f"{member.name} was read"
        return real_extract(self, member)

    monkeypatch.setattr(tarfile.TarFile, "extractfile", guarded_extract)
    with pytest.raises(DataError) as exc:
        load_path(root)
    line = _one_line(exc)
    assert "data_batch_1' is " in line and "over the 9.8 KiB limit for one CIFAR-10 batch file" in line


def test_resize_refuses_a_huge_pixel_count_from_the_header(tmp_path, monkeypatch):
    from PIL import ImageFile

    root = write_image_dir(tmp_path, train_per_class=1, test_per_class=1)
    (root / "train" / "cat" / "0000a.png").write_bytes(_png(7000, 7000, 8, 2))  # 49 Mpx: under PIL's own limit
    real_load = ImageFile.ImageFile.load

    def guarded_load(self):
        assert self.size[0] * self.size[1] <= image_folders.MAX_IMAGE_PIXELS, "the huge image was decoded"
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", guarded_load)
    with pytest.raises(DataError) as exc:
        load_path(root, "resize")
    assert "'train/cat/0000a.png' is 7000x7000 (49000000 pixels), over the 36000000-pixel limit" in _one_line(exc)


# -- 2. 16-bit images --------------------------------------------------------------------------


LEVELS = np.array([0, 1, 2, 127, 128, 200, 254, 255])  # 8-bit values; 16-bit files hold them times 257


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path, suffix):
    from PIL import Image

    grey = np.resize(LEVELS, (32, 32)).astype(np.uint16)
    path = tmp_path / f"deep.{suffix}"
    Image.fromarray(grey * 257).save(path)
    with Image.open(path) as img:
        assert img.mode in ("I", "I;16", "I;16B"), img.mode  # what the decoder must scale
    arr = decode_image(path.read_bytes(), path.name)
    assert arr.dtype == np.uint8 and arr.shape == (32, 32, 3)
    np.testing.assert_array_equal(arr[..., 0], grey)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()


def test_sixteen_bit_values_between_levels_round_to_the_nearest(tmp_path):
    from PIL import Image

    wide = np.array([0, 128, 129, 32767, 32768, 65534, 65535], np.uint16)  # / 257: 0, .498, .502, 127.498, ...
    path = tmp_path / "deep.png"
    Image.fromarray(np.resize(wide, (32, 32))).save(path)
    arr = decode_image(path.read_bytes(), path.name)
    np.testing.assert_array_equal(arr[0, :7, 0], [0, 0, 1, 127, 128, 255, 255])


@pytest.mark.parametrize("colour_type, channels", [(2, 3), (6, 4), (4, 2)])  # RGB, RGBA, grey + alpha
def test_sixteen_bit_colour_pngs_decode_to_their_8_bit_values(colour_type, channels):
    wide = (np.resize(LEVELS, (32, 32, channels)).astype(">u2") * 257)
    rows = b"".join(b"\x00" + row.tobytes() for row in wide)
    arr = decode_image(_png(32, 32, 16, colour_type, rows), "deep.png")
    expected = np.resize(LEVELS, (32, 32, channels)).astype(np.uint8)
    np.testing.assert_array_equal(arr, expected[..., :3] if channels >= 3 else np.repeat(expected[..., :1], 3, -1))


def test_a_sixteen_bit_folder_loads(tmp_path):
    from PIL import Image

    root = write_image_dir(tmp_path, train_per_class=1, test_per_class=1)
    [cat] = (root / "train" / "cat").iterdir()
    Image.fromarray(np.full((32, 32), 100 * 257, np.uint16)).save(cat)
    raw = load_path(root)
    assert (raw.x_train[raw.y_train == raw.class_names.index("cat")] == 100).all()


# -- 3. skipped files ------------------------------------------------------------------------------


def _add_strays(root) -> None:
    """One file in a sub-folder of a class folder, two hidden ones, one outside the class folders."""
    (root / "train" / "cat" / "sub").mkdir()
    shutil.copy(next((root / "train" / "cat").glob("*.png")), root / "train" / "cat" / "sub" / "x.png")
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\0" * 10)
    (root / "__MACOSX" / "train" / "cat").mkdir(parents=True)
    (root / "__MACOSX" / "train" / "cat" / "._x.png").write_bytes(b"\0" * 10)
    (root / "README.md").write_text("tiny CIFAR")


def _skip_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cifarx" and r.levelno == logging.WARNING
            and "skipped" in r.getMessage()]


def test_skipped_files_are_counted_reported_in_one_line_and_survive_the_cache(tmp_path, caplog):
    root = write_image_dir(tmp_path, train_per_class=1, test_per_class=1)
    _add_strays(root)
    caplog.set_level(logging.INFO, logger="cifarx")
    raw, info = load_raw(str(root), str(tmp_path / "cache"))
    assert raw.x_train.shape[0] == 10  # the nested copy is not a training image
    assert info["skipped"] == {"hidden": 2, "nested": 1, "other": 1} and not info["from_cache"]
    [line] = _skip_warnings(caplog)
    assert "skipped 4 files" in line and "1 in a sub-folder of a class folder" in line
    assert "'train/cat/sub/x.png'" in line and "2 hidden" in line and "1 outside" in line
    json.dumps(info)  # provenance's data section

    caplog.clear()
    raw, info = load_raw(str(root), str(tmp_path / "cache"))
    assert info["from_cache"] and info["skipped"] == {"hidden": 2, "nested": 1, "other": 1}
    assert raw.skipped == info["skipped"]
    [line] = _skip_warnings(caplog)
    assert "skipped 4 files" in line and "1 in a sub-folder of a class folder" in line


def test_a_clean_folder_skips_nothing_and_says_nothing(tmp_path, caplog):
    root = write_image_dir(tmp_path, train_per_class=1, test_per_class=1)
    _, info = load_raw(str(root), str(tmp_path / "cache"))
    assert info["skipped"] == {"hidden": 0, "nested": 0, "other": 0} and not _skip_warnings(caplog)
    _, info = load_raw(str(write_batches_dir(tmp_path / "b")), str(tmp_path / "cache"))
    assert info["skipped"] == {}


def test_skipped_members_of_a_zip_are_counted(tmp_path, caplog):
    archive = write_zip(tmp_path, prefix="cifar10/", train_per_class=1, test_per_class=1)
    with zipfile.ZipFile(archive, "a") as zf:
        jpg = zf.read(next(n for n in zf.namelist() if n.startswith("cifar10/train/cat/")))
        zf.writestr("cifar10/train/cat/more/x.jpg", jpg)
        zf.writestr("__MACOSX/cifar10/train/cat/._x.jpg", b"\0")
    raw = load_path(archive)
    assert raw.skipped == {"hidden": 1, "nested": 1, "other": 0}
    [line] = _skip_warnings(caplog)
    assert "'cifar10/train/cat/more/x.jpg'" in line


def test_a_cache_entry_without_skip_counts_is_rebuilt(tmp_path, caplog):
    root = write_image_dir(tmp_path, train_per_class=1, test_per_class=1)
    _add_strays(root)
    load_raw(str(root), str(tmp_path / "cache"))
    meta_file = next((tmp_path / "cache").glob("v*/meta.json"))
    meta = json.loads(meta_file.read_text())
    del meta["skipped"]  # as an older cifarx wrote it
    meta_file.write_text(json.dumps(meta))
    _, info = load_raw(str(root), str(tmp_path / "cache"))
    assert not info["from_cache"] and info["skipped"]["nested"] == 1 and "failed its check" in caplog.text
    _, info = load_raw(str(root), str(tmp_path / "cache"))
    assert info["from_cache"] and info["skipped"]["nested"] == 1


# -- 4. file names that are not UTF-8 ---------------------------------------------------------------


def _non_utf8_ok(tmp_path) -> bool:
    try:
        (tmp_path / os.fsdecode(b"probe\xe9")).write_bytes(b"")
        return True
    except (OSError, UnicodeError):
        return False


def test_non_utf8_file_names_load_and_are_printable(tmp_path, caplog):
    if not _non_utf8_ok(tmp_path):
        pytest.skip("this file system refuses names that are not UTF-8")
    root = write_image_dir(tmp_path / os.fsdecode(b"d\xe9"), train_per_class=1, test_per_class=1)
    cat = os.fsencode(root / "train" / "cat")
    shutil.copy(next((root / "train" / "cat").glob("*.png")), os.fsdecode(os.path.join(cat, b"caf\xe9.png")))
    for split in ("train", "test"):  # a class folder too
        os.rename(os.fsencode(root / split / "frog"), os.path.join(os.fsencode(root / split), b"grenouill\xe9"))
    _add_strays(root)
    os.rename(os.fsencode(root / "train" / "cat" / "sub" / "x.png"), os.fsencode(root / "train" / "cat" / "sub")
              + b"/\xff.png")
    raw, info = load_raw(str(root), str(tmp_path / "cache"))
    assert raw.x_train.shape[0] == 11 and "grenouill\\xe9" in raw.class_names
    text = json.dumps(info, ensure_ascii=False)
    text.encode("utf-8")  # provenance is written as UTF-8
    assert "d\\\\xe9" in text and "\\udc" not in text
    [line] = _skip_warnings(caplog)
    line.encode("utf-8")
    assert "sub/\\xff.png" in line
    raw2, info2 = load_raw(str(root), str(tmp_path / "cache"))
    assert info2["from_cache"] and raw2.class_names == raw.class_names and info2["sha256"] == info["sha256"]


def test_a_bad_non_utf8_file_is_refused_in_one_printable_line(tmp_path):
    if not _non_utf8_ok(tmp_path):
        pytest.skip("this file system refuses names that are not UTF-8")
    root = write_image_dir(tmp_path, train_per_class=1, test_per_class=1)
    (root / "train" / "cat" / os.fsdecode(b"caf\xe9.png")).write_bytes(b"not a png")
    with pytest.raises(DataError) as exc:
        load_path(root)
    assert "'train/cat/caf\\xe9.png' is not a readable image" in _one_line(exc)


# -- 5. classes too small for a stratified split ---------------------------------------------------


def _lonely_cat(tmp_path, split: str = "train"):
    root = write_image_dir(tmp_path, train_per_class=10, test_per_class=3)
    for extra in sorted((root / split / "cat").iterdir())[1:]:
        extra.unlink()
    return root


def test_a_class_with_one_image_and_a_validation_split_is_one_line(tmp_path):
    root = _lonely_cat(tmp_path)
    with pytest.raises(DataError) as exc:
        load_dataset(data_cfg(root, tmp_path / "c", val_fraction=0.2), seed=0)
    line = _one_line(exc)
    assert "class 'cat' has only 1 image for training, but data.val_fraction=0.2" in line
    assert "needs at least 2 of every class" in line and "set data.val_fraction=0" in line
    assert len(load_dataset(data_cfg(root, tmp_path / "c", val_fraction=0), seed=0).y_train) == 91


@pytest.mark.parametrize("split, key, n", [("train", "max_train", 20), ("test", "max_test", 15)])
def test_a_class_with_one_image_and_a_stratified_subset_is_one_line(tmp_path, split, key, n):
    root = _lonely_cat(tmp_path, split)
    with pytest.raises(DataError) as exc:
        load_dataset(data_cfg(root, tmp_path / "c", val_fraction=0, **{key: n}), seed=0)
    assert f"class 'cat' has only 1 image, but data.{key}={n} (a stratified subset) needs at least 2" in _one_line(exc)
    assert f"unset data.{key}" in str(exc.value)


def test_a_subset_one_short_of_everything(tmp_path):
    root = write_batches_dir(tmp_path / "d")
    ds = load_dataset(data_cfg(root, tmp_path / "c", val_fraction=0, max_train=99, max_test=39), seed=0)
    assert len(ds.y_train) == 99 and len(ds.y_test) == 39 and set(ds.y_train) == set(range(10))
    again = load_dataset(data_cfg(root, tmp_path / "c", val_fraction=0, max_train=99, max_test=39), seed=0)
    np.testing.assert_array_equal(ds.y_train, again.y_train)
