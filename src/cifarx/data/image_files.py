"""Loose image files to predict on: one image, a folder (searched recursively), a ``.zip``, a glob
pattern or a list file (``.txt``, one path a line), as named files read on demand.

Each file is read with the size checks training applies and decoded by the decoder training uses
(:func:`cifarx.data.image_folders.decode_image`), so a file means the same pixels to both. A file
that cannot be read raises a one-line DataError naming it; the caller decides whether that skips it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifarx.data.image_folders import IMAGE_SUFFIXES, decode_image, read_image_file, read_zip_member
from cifarx.data.raw import printable
from cifarx.errors import DataError, one_line

LIST_SUFFIX = ".txt"
GLOB_CHARS = "*?["
KINDS = "an image, a folder, a .zip, a glob pattern such as 'photos/*.jpg' (quoted) or a .txt list of paths"


@dataclass(frozen=True)
class ImageFile:
    name: str  # how predictions.csv, skipped.csv and messages show it
    read: Callable[[], bytes]
    problem: str | None = None  # why it cannot be read, known from the listing (a list file's missing path)


@dataclass
class ImageSource:
    given: str
    kind: str  # image | folder | zip | glob | list
    files: list[ImageFile]
    hidden: int = 0  # dot-files and __MACOSX entries of a folder or zip: never read (training skips them too)
    _close: list[Callable[[], None]] = field(default_factory=list, repr=False)


def _hidden(parts: tuple[str, ...] | list[str]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def source_kind(source: str) -> str:
    path = Path(source).expanduser()
    if path.is_dir():
        return "folder"
    if path.exists():
        suffix = path.suffix.lower()
        return "zip" if suffix == ".zip" else "list" if suffix == LIST_SUFFIX else "image"
    if any(c in source for c in GLOB_CHARS):
        return "glob"
    raise DataError(f"source='{printable(source)}' does not exist; give {KINDS}")


def _file(path: Path, name: str) -> ImageFile:
    return ImageFile(printable(name), lambda: read_image_file(path, printable(name)))


def _missing(name: str, why: str) -> ImageFile:
    def read() -> bytes:
        raise DataError(f"'{printable(name)}' {why}")

    return ImageFile(printable(name), read, f"'{printable(name)}' {why}")


def _folder(source: str) -> tuple[list[ImageFile], int]:
    root = Path(source).expanduser()
    files, hidden = [], 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if _hidden(path.relative_to(root).parts):
            hidden += 1
        else:
            files.append(_file(path, str(Path(source) / path.relative_to(root))))
    return files, hidden


def _listed(source: str) -> list[ImageFile]:
    """A list file's paths, in its order: blank lines and '#' comments left out; a relative path
    is relative to the list file's folder."""
    base = Path(source).parent
    try:
        lines = Path(source).expanduser().read_text(errors="surrogateescape").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read the list source='{printable(source)}': {one_line(exc.strerror or str(exc))}") from None
    files = []
    for line in (ln.strip() for ln in lines):
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        shown = str(path) if path.is_absolute() else os.path.normpath(base / path)
        path = Path(shown).expanduser()
        if path.is_dir():
            files.append(_missing(shown, "is a folder; a list file names image files, one a line"))
        elif not path.exists():
            files.append(_missing(shown, "does not exist"))
        else:
            files.append(_file(path, shown))
    return files


def _globbed(source: str) -> list[ImageFile]:
    names = sorted(glob.glob(os.path.expanduser(source), recursive=True))
    return [_file(Path(name), name) for name in names if Path(name).is_file()]


def _zip(source: str) -> tuple[list[ImageFile], int, zipfile.ZipFile]:
    try:
        zf = zipfile.ZipFile(Path(source).expanduser())
        infos = sorted((i for i in zf.infolist() if not i.is_dir()), key=lambda i: i.filename)
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, NotImplementedError, RuntimeError) as exc:
        raise DataError(f"cannot read zip source='{printable(source)}': {one_line(str(exc))}") from exc
    files, hidden = [], 0
    for info in infos:
        if _hidden(info.filename.split("/")):
            hidden += 1
            continue
        name = printable(f"{source.rstrip('/')}/{info.filename}")

        def read(info=info, name=name) -> bytes:
            try:
                return read_zip_member(zf, info)
            except DataError:
                raise
            except Exception as exc:  # a damaged member (CRC, truncated, unsupported compression)
                raise DataError(f"'{name}' cannot be read from the zip: {one_line(str(exc)) or type(exc).__name__}") \
                    from exc

        files.append(ImageFile(name, read))
    return files, hidden, zf


@contextlib.contextmanager
def open_source(source: str) -> Iterator[ImageSource]:
    """The files of ``source`` (see the module's docstring), sorted by name except a list file's,
    which keep its order."""
    kind = source_kind(source)
    src = ImageSource(source, kind, [])
    if kind == "folder":
        src.files, src.hidden = _folder(source)
    elif kind == "list":
        src.files = _listed(source)
    elif kind == "glob":
        src.files = _globbed(source)
    elif kind == "zip":
        src.files, src.hidden, zf = _zip(source)
        src._close.append(zf.close)
    else:
        src.files = [_file(Path(source).expanduser(), source)]
    try:
        yield src
    finally:
        for close in src._close:
            close()


def check_source(source: str, other_sizes: str | None = None) -> str:
    """DataError in one line unless ``source`` names at least one file to read; returns its kind.
    A single image is decoded too (with ``other_sizes``, when given): it is the whole source."""
    with open_source(source) as src:
        if src.kind == "image" and other_sizes is not None:
            decode_file(src.files[0], other_sizes)
        if not src.files:
            what = {"folder": "holds no files", "zip": "holds no files", "glob": "matches no files",
                    "list": "lists no paths"}[src.kind]
            hidden = f" (only {src.hidden} hidden ones)" if src.hidden else ""
            raise DataError(f"source='{printable(source)}' {what}{hidden}; give {KINDS}")
        return src.kind


def decode_file(file: ImageFile, other_sizes: str = "refuse") -> np.ndarray:
    """``file`` as uint8 32x32 RGB, exactly as training decodes an image of its folder: the same
    formats (by suffix), size policy, grayscale-to-RGB; DataError naming the file otherwise."""
    if file.problem:
        raise DataError(file.problem)
    if Path(file.name).suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"'{file.name}' is not an image file (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
    try:
        blob = file.read()
    except OSError as exc:  # gone since it was listed, no permission
        raise DataError(f"'{file.name}' cannot be read: {one_line(exc.strerror or str(exc))}") from exc
    if not blob:
        raise DataError(f"'{file.name}' is empty (0 bytes)")
    try:
        return decode_image(blob, file.name, other_sizes)
    except DataError as exc:
        from PIL import UnidentifiedImageError

        cause = exc.__cause__
        if cause is None or isinstance(cause, UnidentifiedImageError) or not str(cause).strip():
            raise
        raise DataError(f"{exc} ({one_line(str(cause))[:120]})") from cause  # e.g. "image file is truncated"
