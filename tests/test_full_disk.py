"""A full disk, for real: each command's run directory on a small tmpfs filled to the brim, at the
point chosen (Hydra's own writes, the start of the run, mid-run). Every command ends with one line
on stderr and exit 2; the run says `failed` or is gone; no temporary file or lock is left; nothing
outside the run directory changes. Data and caches stay on the ordinary disk.

Mounting needs root (CI runs as root); elsewhere these tests skip.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli, tiny_train_overrides, write_batches_dir

pytestmark = pytest.mark.slow


class Disk:
    """A mounted tmpfs and a filler file that takes whatever space is asked for."""

    def __init__(self, mount: Path):
        self.mount = mount
        self.filler = mount / ".filler"

    def fill(self, leave: int = 0) -> None:
        """Take every free byte, then give back ``leave`` bytes (whole pages) for what should fit."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        try:
            while True:  # the last partial chunk
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        if leave:
            os.truncate(self.filler, max(0, self.filler.stat().st_size - leave))

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.mount)) for p in self.mount.rglob("*") if p != self.filler)


@pytest.fixture
def disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mount)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip() or done.returncode}")
    try:
        yield Disk(mount)
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)  # an fd left open: never a mount left behind


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tiny data and cache on the ordinary disk, and one tiny train run (evaluate and extract read it)."""
    tmp = tmp_path_factory.mktemp("fulldisk")
    root, cache = write_batches_dir(tmp / "data"), tmp / "cache"
    run = tmp / "trained"
    result = run_cli(["train", *tiny_train_overrides(root, cache), f"hydra.run.dir={run}"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp, root, cache, run


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_failure(result, command: str, run: Path, disk: Disk, status: str | None = None,
                            there_before: tuple[str, ...] = ()) -> None:
    """Exit 2, one line naming the full disk (the run's own progress lines before it aside: no
    traceback, no warning), the run `failed` (or gone), nothing temporary left."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert lines and lines[-1].startswith(f"cifarx {command}: error: no space left on device"), lines
    assert [ln for ln in lines if "error" in ln.lower() or "could not" in ln] == lines[-1:], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    left = disk.files()
    assert not [f for f in left if ".tmp" in Path(f).name], left
    if run.exists():
        assert (run / "status.json").exists(), left  # a directory left behind says how the run ended
        recorded = json.loads((run / "status.json").read_text())
        assert recorded["status"] == "failed" and "no space left on device" in recorded["error"]
    else:
        assert left == sorted(there_before), left  # discarded: not even Hydra's files or the lock
    if status == "discarded":
        assert not run.exists(), left
    elif status is not None:
        assert run.exists() and json.loads((run / "status.json").read_text())["status"] == status, left


def test_train_full_disk_mid_run_fails_the_run_in_one_line(trained, disk, monkeypatch):
    """The disk fills while the first checkpoint is saved (Keras' own writes): the run, which
    has begun training, stays as `failed`; the half-written checkpoint is gone."""
    from cifarx.run.rundir import RunDir

    tmp, root, cache, _ = trained
    save_model = RunDir.save_model

    def save_on_a_full_disk(self, name, model, epochs=None, **kw):
        disk.fill()
        return save_model(self, name, model, epochs=epochs, **kw)

    monkeypatch.setattr(RunDir, "save_model", save_on_a_full_disk)
    before = snapshot(tmp)
    run = disk.mount / "train_run"
    result = run_cli(["train", *tiny_train_overrides(root, cache), f"hydra.run.dir={run}"], cwd=tmp)
    assert_one_line_failure(result, "train", run, disk, status="failed")
    assert not list(run.glob("*.keras"))
    assert snapshot(tmp) == before  # data, cache, the other run: untouched


def test_evaluate_full_disk_before_any_result_discards_the_run(trained, disk, monkeypatch):
    """The disk fills once the model is loaded: no result exists, so nothing of the run stays."""
    import cifarx.models

    tmp, _, _, source = trained
    load_model = cifarx.models.load_model

    def load_then_fill(path):
        model = load_model(path)
        disk.fill()
        return model

    monkeypatch.setattr(cifarx.models, "load_model", load_then_fill)
    before = snapshot(tmp)
    run = disk.mount / "evaluate_run"
    result = run_cli(["evaluate", f"run={source}", f"hydra.run.dir={run}"], cwd=tmp)
    assert_one_line_failure(result, "evaluate", run, disk, status="discarded")
    assert snapshot(tmp) == before


def test_extract_full_disk_is_an_error_not_a_sigbus(trained, disk):
    """Features of a wide layer (960 KB) with 128 KB free: the space is reserved up front, so the
    disk says ENOSPC at once; written through a memory map this was a SIGBUS (no message, status
    `running`, a `.tmp.npy` left). A subprocess: a SIGBUS would kill the test runner."""
    tmp, _, _, source = trained
    disk.fill(leave=128 * 1024)
    before = snapshot(tmp)
    run = disk.mount / "extract_run"
    done = run_cli(["extract", f"run={source}", "layer=zscore", f"hydra.run.dir={run}"], cwd=tmp, timeout=300,
                   subprocess_=True)
    assert done.returncode != -7, "SIGBUS: features written through a memory map on a full disk"
    done.stderr = "\n".join(ln for ln in done.stderr.splitlines() if "cuInit" not in ln)  # TensorFlow's, at import
    assert_one_line_failure(done, "extract", run, disk, status="discarded")
    assert "features_train.npy" in done.stderr
    assert snapshot(tmp) == before


@pytest.mark.parametrize("where", ["hydra.run.dir", "default", "sweep"])
def test_classic_with_no_byte_free_fails_in_hydras_own_writes_and_leaves_nothing(trained, disk, where):
    """0 bytes free: Hydra's own first write (.hydra/config.yaml, or a sweep's multirun.yaml),
    before cifarx's task, is what fails. The folder, the lock, Hydra's files and the folders above
    the run this invocation made go (an empty folder takes no space, so they were made); one line,
    no traceback. Empty folders that were there before stay (outputs/)."""
    tmp, root, cache, _ = trained
    parents = {"hydra.run.dir": (), "default": ("outputs",),  # outputs/classic is new: it goes, outputs/ stays
               "sweep": ("outputs", "outputs/classic")}[where]  # outputs/classic/multirun is new
    if parents:
        (disk.mount / parents[-1]).mkdir(parents=True)
    disk.fill()
    args = ["classic", *(["-m", "seed=1,2"] if where == "sweep" else []), "features=pixels", f"data.root={root}",
            f"data.cache_dir={cache}"]
    if where == "hydra.run.dir":  # two new folders: the claim makes runs/ too
        args.append(f"hydra.run.dir={disk.mount / 'runs' / 'classic_run'}")
    before = snapshot(tmp)
    result = run_cli(args, cwd=tmp if where == "hydra.run.dir" else disk.mount)
    run = Path(result.stderr.split("device (", 1)[-1].split(")")[0])  # the folder the line names
    expected = {"hydra.run.dir": disk.mount / "runs" / "classic_run", "default": disk.mount / "outputs" / "classic",
                "sweep": disk.mount / "outputs" / "classic" / "multirun"}[where]
    assert (run if where == "hydra.run.dir" else run.parent) == expected
    assert_one_line_failure(result, "classic", run, disk, status="discarded", there_before=parents)
    assert snapshot(tmp) == before

    disk.filler.unlink()  # with room again, the same folder is a fresh run's (no lock, nothing foreign)
    if where == "hydra.run.dir":
        again = run_cli(args, cwd=tmp)
        assert again.returncode == 0, again.stderr[-2000:]


def test_data_full_disk_while_writing_the_sample_grid_discards_the_run(trained, disk, monkeypatch):
    """The disk fills before samples.png (matplotlib's own write): no result yet, the run goes."""
    from cifarx.run.rundir import RunDir

    tmp, root, cache, _ = trained
    save_figure = RunDir.save_figure

    def save_on_a_full_disk(self, name, fig):
        disk.fill()
        return save_figure(self, name, fig)

    monkeypatch.setattr(RunDir, "save_figure", save_on_a_full_disk)
    before = snapshot(tmp)
    run = disk.mount / "data_run"
    result = run_cli(["data", f"data.root={root}", f"data.cache_dir={cache}", f"hydra.run.dir={run}"], cwd=tmp)
    assert_one_line_failure(result, "data", run, disk, status="discarded")
    assert snapshot(tmp) == before


def test_no_room_for_the_run_directory_itself_is_one_line(trained, tmp_path):
    """No inode left: the run directory cannot even be made (cifarx's claim, before Hydra)."""
    tmp, root, cache, _ = trained
    inodes = tmp_path / "inodes"
    inodes.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=3", "tmpfs", str(inodes)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs with few inodes here")
    try:
        n = 0
        try:
            while True:
                (inodes / f"f{n}").touch()
                n += 1
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        listing = sorted(p.name for p in inodes.iterdir())
        result = run_cli(["data", f"data.root={root}", f"data.cache_dir={cache}",
                          f"hydra.run.dir={inodes / 'run'}"], cwd=tmp)
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr[-2000:]
        assert "error: no space left on device" in result.stderr
        assert sorted(p.name for p in inodes.iterdir()) == listing
    finally:
        subprocess.run(["umount", "-l", str(inodes)], capture_output=True)
