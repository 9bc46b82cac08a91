"""Recipe loading: typed values, helpful errors, overrides, presets."""

import pytest

from selfsup.errors import ConfigError
from selfsup.recipe import dump_recipe, load_recipe


def test_defaults_and_types():
    r = load_recipe({"method": {"name": "moco", "queue_size": 128}, "optim": {"lr": 1}})
    assert r.method.queue_size == 128 and r.method.name == "moco"
    assert isinstance(r.optim.lr, float) and r.optim.lr == 1.0


@pytest.mark.parametrize(
    "tree,needles",
    [
        ({"optim": {"lrr": 0.1}}, ["unknown key 'lrr'", "'optim'", "did you mean 'lr'"]),
        ({"dataa": {}}, ["unknown key 'dataa'", "top level", "'data'"]),
        ({"data": {"augment": {"flip": 0.5}}}, ["'flip'", "data.augment", "flip_p"]),
        ({"method": {"name": "moco", "queue": 10}}, ["'queue'", "'method'", "queue_size"]),
        ({"method": {"name": "simclrr"}}, ["unknown method 'simclrr'", "simclr"]),
        ({"optim": {"lr": "fast"}}, ["optim.lr", "expected a number"]),
        ({"train": {"epochs": 2.5}}, ["train.epochs", "integer"]),
        ({"optim": {"name": "adagrad"}}, ["optim.name", "adamw"]),
        ({"data": {"batch_size": 1}}, ["data.batch_size"]),
    ],
)
def test_errors_name_key_location_and_suggestion(tree, needles):
    with pytest.raises(ConfigError) as e:
        load_recipe(tree)
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_set_overrides_parse_yaml_values(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("method: {name: simclr}\noptim: {lr: 0.1}\n")
    r = load_recipe(p, ["optim.lr=0.5", "data.augment.crop_scale=[0.5, 1.0]", "eval.run=[]", "model.width=8"])
    assert (
        r.optim.lr == 0.5
        and r.data.augment.crop_scale == [0.5, 1.0]
        and r.eval.run == []
        and r.model.width == 8
    )
    with pytest.raises(ConfigError, match="key=value"):
        load_recipe(p, ["optim.lr"])
    with pytest.raises(ConfigError, match="unknown key 'lrate'"):
        load_recipe(p, ["optim.lrate=1"])


def test_presets_fill_unset_values_only():
    r = load_recipe({"data": {"augment": {"preset": "mocov2", "blur_p": 0.1}}})
    assert r.data.augment.crop_scale == [0.2, 1.0] and r.data.augment.jitter == [0.4, 0.4, 0.4, 0.1]
    assert r.data.augment.blur_p == 0.1  # the recipe's own key wins
    r = load_recipe({"data": {"augment": {"preset": "mocov1"}}})
    assert r.data.augment.jitter_p == 1.0 and r.data.augment.blur_p == 0.0


def test_resolved_config_round_trips(tmp_path):
    r = load_recipe({"method": {"name": "moco", "version": "v1"}, "model": {"width": 8}})
    p = tmp_path / "config.yaml"
    p.write_text(dump_recipe(r))
    assert load_recipe(p) == r


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("data: {source: [digits\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(p)
