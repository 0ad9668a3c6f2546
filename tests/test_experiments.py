"""Every experiment file of every command composes and passes pre-flight (lightning-hydra-template's
`experiment=glob(*)` check): an experiment that a rename or a schema change broke fails here, not in
a user's first run."""

from __future__ import annotations

import pytest

from cifarx.config.preflight import preflight
from conftest import REPO, write_batches_dir


def _experiments(command: str) -> list[str]:
    return sorted(p.stem for p in (REPO / "conf" / "commands" / command / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiments")
    return write_batches_dir(root / "data"), root / "cache"


def test_every_command_with_experiments_is_covered():
    assert _experiments("train") and _experiments("classic")


@pytest.mark.parametrize("name", _experiments("train"))
def test_a_train_experiment_passes_preflight(name, data):
    root, cache = data
    assert preflight("train", [f"experiment={name}", f"data.root={root}", f"data.cache_dir={cache}"]) is None


@pytest.mark.parametrize("name", _experiments("classic"))
def test_a_classic_experiment_passes_preflight(name, data):
    root, cache = data
    assert preflight("classic", [f"experiment={name}", "features=pixels", f"data.root={root}",
                                 f"data.cache_dir={cache}"]) is None


def test_every_command_shares_conf_common():
    """Hydra's settings (run folders, logs, help, the sweep summary) and the seed are written once, in
    conf/common.yaml: every command's primary config takes them from there, none repeats them."""
    import yaml

    from cifarx.commands import COMMANDS

    for name, command in COMMANDS.items():
        if not command.hydra:
            continue
        text = (REPO / "conf" / f"{name}.yaml").read_text()
        defaults = yaml.safe_load(text)["defaults"]
        assert "common" in defaults, name
        assert "override hydra/" not in text and "\nseed:" not in text, name


@pytest.mark.parametrize("group", ["schedule", "clf", "logger", "model"])
def test_an_options_name_is_its_file_name(group):
    """``name`` (and an experiment's ``experiment_name``) is what metrics.json, logs and MLflow show for
    the choice: a copied option file that kept its original's name would be recorded as the original."""
    import yaml

    files = sorted((REPO / "conf" / group).glob("*.yaml"))
    assert files
    named = {p.stem: yaml.safe_load(p.read_text()).get("name") for p in files}
    assert {stem: name for stem, name in named.items() if name is not None and name != stem} == {}


@pytest.mark.parametrize("command", ["train", "classic"])
def test_an_experiments_name_is_its_file_name(command):
    import yaml

    names = {name: yaml.safe_load((REPO / "conf" / "commands" / command / "experiment" / f"{name}.yaml").read_text())
             .get("experiment_name") for name in _experiments(command)}
    assert {stem: name for stem, name in names.items() if name != stem} == {}
