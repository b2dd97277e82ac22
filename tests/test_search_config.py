"""Study configs and the search space: defaults in one place, overrides, one-sentence errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.cli import main, parse_sets
from pipelines.models import MODEL_NAMES
from pipelines.errors import PainsearchError
from search.config import load_study_config, study_config
from search.space import SpaceConfig, default_space, space_for

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name", ["smoke", "demo", "paper"])
def test_every_config_has_a_valid_study(name):
    cfg = load_study_config(CONFIGS / f"{name}.yaml")
    assert cfg.models and cfg.scenarios and Path(cfg.shards).name == "shards"


def test_paper_config_is_the_full_study():
    cfg = load_study_config(CONFIGS / "paper.yaml")
    assert set(cfg.models) == set(MODEL_NAMES) and cfg.folds == 5 and len(cfg.scenarios) == 3
    assert cfg.train.size is None and cfg.train.weights == "imagenet" and cfg.storage.startswith("s3://")
    assert cfg.refit  # the models the paper's numbers come from train on training + validation (80 % of the pool)


def test_demo_config_has_a_scratch_and_an_application_network():
    from pipelines.models import get_spec

    cfg = load_study_config(CONFIGS / "demo.yaml")
    kinds = {get_spec(m).pretrained for m in cfg.models}
    assert kinds == {True, False}


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_default_space_holds_the_papers_settings(model):
    """The paper's learning rate (1e-3) and epochs (30) lie strictly inside the default ranges, and depth 0
    (nothing frozen, its choice) is a value Optuna can propose, as 1 is."""
    from optuna.distributions import FloatDistribution
    from ray.tune.search.optuna import OptunaSearch

    from pipelines.models import get_spec
    from search.space import PAPER

    spec = get_spec(model)
    space = default_space(model, pretrained_weights=True)
    lo, hi = space.learning_rate
    assert lo < PAPER["learning_rate"] < hi and (lo, hi) == (1e-5, 1e-2)
    assert space.epochs[0] < PAPER["epochs"] < space.epochs[1] == 50
    assert (space.finetune_depth is not None) == spec.pretrained
    assert default_space(model, pretrained_weights=False).finetune_depth is None  # nothing pretrained to freeze
    assert set(space.tune()) == {"learning_rate", "epochs"} | ({"finetune_depth"} if spec.pretrained else set())
    if spec.pretrained:
        depth = dict(OptunaSearch.convert_search_space(space.tune()))["finetune_depth"]
        assert isinstance(depth, FloatDistribution) and depth.step == pytest.approx(0.1)
        assert depth.low == PAPER["finetune_depth"] == 0.0 and depth.high == 1.0


def test_space_override_narrows_the_bounds():
    s = space_for("vgg16", True, SpaceConfig(learning_rate=(1e-4, 2e-4), epochs=(2, 3), finetune_depth=(0.5, 1.0)))
    assert s.learning_rate == (1e-4, 2e-4) and s.epochs == (2, 3) and s.finetune_depth == (0.5, 1.0)


@pytest.mark.parametrize("search, where", [
    ({"space": {"epochs": [3, 2]}}, "`search.space` has epochs [3, 2]; give [low, high] with 1 <= low <= high <= 500"),
    ({"space_by_model": {"weinet": {"learning_rate": [0.0, 1e-3]}}},
     "`search.space_by_model.weinet` has learning_rate [0.0, 0.001]; give [low, high] with 0 < low"),
    ({"space": {"finetune_depth": [0.5, 2]}}, "`search.space` has finetune_depth [0.5, 2.0]; give [low, high] with 0 <= low <= high <= 1"),
    ({"space": {"learning_rate": [0.5, 2]}}, "`search.space` has learning_rate [0.5, 2.0]; give [low, high] with 0 < low <= high <= 1"),
    ({"space": {"epochs": [10, 1000]}}, "`search.space` has epochs [10, 1000]; give [low, high] with 1 <= low <= high <= 500"),
])
def test_bad_bounds_are_refused_when_the_config_is_read(search, where):
    """Before any search starts, naming the setting that holds them (the study's or one network's)."""
    with pytest.raises(PainsearchError, match=where.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")) as err:
        study_config({"shards": "x", "models": ["weinet"], "search": search})
    assert "\n" not in str(err.value)


def test_a_network_can_have_its_own_bounds():
    cfg = study_config({"shards": "x", "models": ["weinet", "vgg16"], "search": {
        "space": {"learning_rate": [2e-4, 4e-4], "epochs": [10, 12]},
        "space_by_model": {"vgg16": {"learning_rate": [4e-5, 1e-4]}}}})
    vgg = space_for("vgg16", False, cfg.search.space, cfg.search.space_by_model.get("vgg16"))
    wei = space_for("weinet", False, cfg.search.space, cfg.search.space_by_model.get("weinet"))
    assert vgg.learning_rate == (4e-5, 1e-4) and vgg.epochs == (10, 12)  # its own rate, the study's epochs
    assert wei.learning_rate == (2e-4, 4e-4)
    with pytest.raises(PainsearchError, match=r"space_by_model.resnet50.*choose from its `models`"):
        study_config({"shards": "x", "models": ["weinet"], "search": {"space_by_model": {"resnet50": {}}}})


@pytest.mark.parametrize("data, message", [
    ({"shards": "x", "models": ["resnet"]}, "unknown network 'resnet'; choose from"),
    ({"shards": "x", "scenarios": ["loso"]}, "must be one of"),
    ({"shards": "x", "folds": 1}, "`folds`"),
    ({"shards": "x", "pool": ["unbc"], "external": ["unbc"]}, "both in `pool` and in `external`"),
    ({"shards": "x", "search": {"trails": 3}}, "`search.trails` is not a known setting"),
])
def test_bad_study_settings_are_one_sentence(data, message):
    with pytest.raises(PainsearchError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        study_config(data)
    assert "\n" not in str(err.value)


def test_set_overrides_parse_as_yaml():
    assert parse_sets(["search.trials=4", "models=[weinet, vgg16]", "study.train.weights_dir=null"]) == {
        "search": {"trials": 4}, "models": ["weinet", "vgg16"], "train": {"weights_dir": None}}
    with pytest.raises(PainsearchError, match="KEY=VALUE"):
        parse_sets(["trials"])


def test_cli_errors_for_a_config_without_study_and_missing_shards(tmp_path, capsys):
    bare = tmp_path / "prepare.yaml"
    bare.write_text("data: {out: shards}\n")
    assert main(["search", "run", "--config", str(bare)]) == 2
    assert "has no `study:` section" in capsys.readouterr().err
    assert main(["search", "run", "--config", str(CONFIGS / "smoke.yaml"), "--set", f"shards={tmp_path}/none",
                 "--storage", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "holds no finished painsearch shards" in err and "data prepare" in err


@pytest.mark.parametrize("section, field, value", [
    ("data", "out", 5), ("study", "shards", 3), ("study", "storage", ["a"]), ("data", "subject_key_file", 12),
    ("data", "sources", {"manifest": 3}), ("data", "sources", ["unbc"]), ("study", "train", {"weights_dir": 7}),
])
def test_a_config_field_of_the_wrong_type_is_one_sentence(tmp_path, section, field, value):
    """Paths are resolved after their type is known: a number or a list where a path belongs is named, not a
    TypeError traceback."""
    import yaml

    from pipelines.config import load_prepare_config

    raw = yaml.safe_load((CONFIGS / "smoke.yaml").read_text())
    raw[section][field] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PainsearchError, match=field):
        load_prepare_config(path) if section == "data" else load_study_config(path)
