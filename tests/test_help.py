"""`cifarx <command> --help [group or key]`: every key with its type, value and meaning (from the
comments in conf/, the one place they are written), narrowed on request; options a command cannot
use are not offered; misspelled keys, groups and choices get a one-line "did you mean"."""

from __future__ import annotations

import re

import pytest

from conftest import REPO, run_cli


def _help(tmp_path, *args: str) -> str:
    result = run_cli([*args], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "outputs").exists()  # help never makes a run directory
    return result.stdout


def _row(text: str, key: str) -> list[str]:
    """The cells (key, type, value, meaning) of ``key``'s line."""
    line = next(ln for ln in text.splitlines() if ln.split() and ln.split()[0] == key)
    return re.split(r"\s{2,}", line.strip())


def _yaml_comment(path: str, key: str) -> str:
    line = next(ln for ln in (REPO / path).read_text().splitlines() if ln.strip().startswith(f"{key}:"))
    return line.split("#", 1)[1].strip()


def test_help_explains_each_key_with_type_value_and_the_yaml_comment(tmp_path):
    out = _help(tmp_path, "train", "--help")
    key, kind, value, meaning = _row(out, "time_budget_reserve")
    assert (kind, value) == ("float", "0.08")
    assert meaning == _yaml_comment("conf/train.yaml", "time_budget_reserve")  # the comment itself, not a copy
    assert meaning.startswith("share of the budget kept back")
    assert _row(out, "time_budget")[1:3] == ["float|null", "null"]
    assert _row(out, "evaluate")[1:3] == ["best|last", "best"]  # an enum lists its values
    for title in ("top level", "trainer", "model (model=simple_cnn)", "optimizer (optimizer=rmsprop)",
                  "data (data=normalize, split=holdout)", "schedule (schedule=step)", "logger (logger=none)"):
        assert any(ln.startswith(title) for ln in out.splitlines()), title
    assert "== Configuration groups ==" in out and "model: airbench, simple_cnn, vgg16, vgg19" in out


def test_help_shows_the_composed_values(tmp_path):
    out = _help(tmp_path, "train", "experiment=fast_cpu", "--help", "trainer")
    assert _row(out, "time_budget")[2] == "900.0" and _row(out, "batch_size")[2] == "256"


@pytest.mark.parametrize("command", ["train", "classic", "evaluate", "extract", "data", "predict"])
def test_every_key_of_every_command_has_a_meaning(tmp_path, command):
    out = _help(tmp_path, command, "--help").split("== Config ==")[1]
    rows = [re.split(r"\s{2,}", ln.strip()) for ln in out.splitlines() if ln.startswith("  ")]
    assert rows
    assert [r[0] for r in rows if len(r) < 4] == []


def test_help_narrows_to_a_section_a_group_or_a_key(tmp_path):
    trainer = _help(tmp_path, "train", "--help", "trainer")
    assert trainer.splitlines()[0] == "trainer" and "time_budget_reserve" in trainer
    assert "== Configuration groups ==" not in trainer and "learning_rate" not in trainer and "seed " not in trainer

    one = _help(tmp_path, "train", "--help", "trainer.time_budget").strip()
    assert len(one.splitlines()) == 1 and one.startswith("trainer.time_budget ")
    assert _help(tmp_path, "train", "--help=time_budget_reserve").startswith("trainer.time_budget_reserve ")

    optimizer = _help(tmp_path, "train", "optimizer=sgd", "--help", "optimizer")
    options = optimizer.split("\n\n")[0].splitlines()
    assert options[0].startswith("optimizer=<option>")
    assert [ln.split()[:2] for ln in options[1:]] == [["adam", "keras.optimizers.Adam."],
                                                      ["adamw", "keras.optimizers.AdamW."],
                                                      ["rmsprop", "keras.optimizers.RMSprop"],
                                                      ["*", "sgd"],
                                                      ["sgd_lookahead", "SGD"]]
    assert _row(optimizer, "nesterov")[1:3] == ["bool", "true"]
    assert "time_budget" not in optimizer

    experiments = _help(tmp_path, "train", "--help", "experiment")
    assert "fast_cpu" in experiments and "classic_knn" not in experiments


@pytest.mark.parametrize("topic, says", [
    ("trainr", "no group or key 'trainr' in cifarx train; did you mean --help trainer?"),
    ("trainer.epoch", "did you mean --help trainer.epochs?"),
    ("clf", "clf is not an option of cifarx train; it belongs to cifarx classic"),
])
def test_an_unknown_help_topic_is_one_line(tmp_path, topic, says):
    result = run_cli(["train", "--help", topic], cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().startswith("cifarx train: error: ") and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _groups(text: str) -> dict[str, list[str]]:
    section = text.split("== Configuration groups ==")[1].split("== Config ==")[0]
    return {g: o.split(", ") for g, o in (ln.split(": ", 1) for ln in section.strip().splitlines())}


def test_a_choice_a_command_cannot_use_is_not_offered(tmp_path):
    assert "augment" in _groups(_help(tmp_path, "train", "--help"))["data"]
    for command in ("classic", "extract", "data"):  # augmentation and normalisation are layers of a trained model
        assert _groups(_help(tmp_path, command, "--help"))["data"] == ["raw"], command
    options = _help(tmp_path, "classic", "--help", "data").split("\n\n")[0].splitlines()[1:]
    assert [ln.split()[:2] for ln in options] == [["*", "raw"]]
    result = run_cli(["classic", "features=pixels", "data=augment"], cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "data=augment means nothing to cifarx classic (only cifarx train uses it)" in result.stderr


@pytest.mark.parametrize("command, args, says", [
    ("train", ["trainer.epoch=3"], "unknown config key 'trainer.epoch'; did you mean trainer.epochs?"),
    ("train", ["+trainer.epoch=3"], "unknown config key 'trainer.epoch'; did you mean trainer.epochs?"),
    ("train", ["epochs=3"], "unknown config key 'epochs'; did you mean trainer.epochs?"),
    ("train", ["trainr.epochs=3"], "did you mean trainer.epochs?"),
    ("train", ["model=vgg16", "model.weigths=null"], "unknown config key 'model.weigths'; did you mean model.weights?"),
    ("train", ["logger.experment=x"], "unknown config key 'logger.experment'; did you mean logger.experiment?"),
    ("train", ["modle=vgg16"], "unknown config key 'modle'; did you mean model=vgg16?"),
    ("classic", ["features=pixels", "clff=rf"], "did you mean clf=rf?"),
    ("train", ["model=vgg91"], "unknown model 'vgg91'; choose one of: airbench, simple_cnn, vgg16, vgg19; "
                               "did you mean model=vgg19?"),
    ("train", ["experiment=fast_cp"], "did you mean experiment=fast_cpu?"),
    ("train", ["hydra/launcher=paralel"], "unknown hydra/launcher 'paralel'; choose one of: basic, parallel, slurm; "
                                          "did you mean hydra/launcher=parallel?"),
])
def test_did_you_mean(command, args, says):
    from cifarx.config.preflight import preflight

    message = preflight(command, args)
    assert message is not None and says in message, message
    assert "\n" not in message


@pytest.mark.parametrize("args, says", [
    (["trainer.epoch=3"], "did you mean trainer.epochs?"),
    (["modle=vgg16"], "did you mean model=vgg16?"),
    (["model=vgg91"], "did you mean model=vgg19?"),
    (["model=vgg91", "--help"], "did you mean model=vgg19?"),  # help composes the same config
])
def test_did_you_mean_end_to_end_is_one_line(tmp_path, args, says):
    result = run_cli(["train", *args], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cifarx train: error: ") and says in lines[0], result.stderr
    assert not (tmp_path / "outputs").exists()


def test_closest_prefers_siblings_leaves_and_transpositions():
    from cifarx.config.suggest import closest

    assert closest("vgg91", ["airbench", "simple_cnn", "vgg16", "vgg19"]) == "vgg19"
    assert closest("trainer.epoch", ["trainer", "trainer.epochs", "seed"]) == "trainer.epochs"
    assert closest("learning_rate", ["optimizer.learning_rate", "trainer.epochs"]) == "optimizer.learning_rate"
    assert closest("zzz", ["trainer", "seed"]) is None


def test_comment_reader(tmp_path):
    from cifarx.config.conffile import read, summary

    path = tmp_path / "x.yaml"
    path.write_text("# @package data\n# @commands train,classic\n# What it is. More words.\n#   cifarx example\n"
                    "defaults:\n  - raw   # the base\n  - _self_\n\n"
                    "url: \"a#b\"   # a '#' in quotes is not a comment\n"
                    "# the comment above\nplain: 1\n"
                    "nested:\n  inner: 2  # inner's\n  items:\n    - k: 1  # not a key\n"
                    "text: |-\n  line: 3  # inside a block scalar\nlast: 4\n")
    doc = read(path)
    assert doc.tags == {"package": "data", "commands": "train,classic"}
    assert summary(doc.description) == "What it is."
    assert doc.defaults == [("raw", "the base"), ("_self_", "")]
    assert doc.meanings == {"url": "a '#' in quotes is not a comment", "plain": "the comment above",
                            "nested.inner": "inner's"}
