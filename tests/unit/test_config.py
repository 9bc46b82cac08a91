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
        ({"optim": {"name": "adam"}}, ["optim.name", "adamw"]),
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


def test_scientific_notation_is_a_number(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-4 (no dot) as a string; papers and users write it so.
    p = tmp_path / "r.yaml"
    p.write_text("optim: {lr: 1e-4, weight_decay: 3.05e-5}\ndata: {augment: {crop_scale: [2e-1, 1]}}\n")
    r = load_recipe(p, ["optim.lars_eta=2e-2", "train.max_steps=1e3"])
    assert r.optim.lr == 1e-4 and r.optim.weight_decay == 3.05e-5 and r.data.augment.crop_scale == [0.2, 1.0]
    assert r.optim.lars_eta == 0.02 and r.train.max_steps == 1000 and isinstance(r.train.max_steps, int)
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        load_recipe(p, ["train.epochs=2.5e0"])
    assert load_recipe(p, ["name=1e3"]).name == "1e3"  # strings stay strings


def test_lr_rules_of_the_papers():
    from selfsup.config import OptimConfig
    from selfsup.engine.optim import lr_rule, peak_lr

    moco = OptimConfig(lr=0.03, lr_scaling="linear", lr_base_batch=256)
    assert peak_lr(moco, 256) == pytest.approx(0.03) and peak_lr(moco, 1024) == pytest.approx(0.12)
    simclr = OptimConfig(lr=0.075, lr_scaling="sqrt", lr_base_batch=1)  # 0.075 x sqrt(B)
    assert peak_lr(simclr, 4096) == pytest.approx(4.8)
    assert peak_lr(OptimConfig(lr=1e-3, lr_scaling="none"), 4096) == 1e-3
    assert lr_rule(moco, 512) == "0.03 x 512 / 256 (linear)"


def test_global_batch_split():
    from selfsup.config import split_batch

    assert split_batch(256, 1) == (256, 256) and split_batch(256, 8) == (32, 32)
    assert split_batch(256, 2, grad_accum=4) == (128, 32)
    with pytest.raises(ConfigError, match=r"data.batch_size=100 .* 3 processes .* use a multiple of 3"):
        split_batch(100, 3)


def test_renamed_keys_say_what_replaced_them():
    with pytest.raises(ConfigError, match=r"optim.scale_lr was replaced: optim.lr_scaling"):
        load_recipe({"optim": {"scale_lr": False}})
    with pytest.raises(ConfigError, match=r"method.bn_splits was replaced: method.bn_group"):
        load_recipe({"method": {"name": "moco", "bn_splits": 8}})


def test_effective_values_are_filled_in():
    v1 = load_recipe({"method": {"name": "moco", "version": "v1"}})
    assert (v1.method.temperature, v1.method.mlp, v1.method.hidden_dim) == (0.07, False, None)
    v2 = load_recipe({"method": {"name": "moco"}, "model": {"width": 8}})
    assert (v2.method.temperature, v2.method.mlp, v2.method.hidden_dim) == (0.2, True, 64)  # 8 x 8 wide
    h = load_recipe({"method": {"name": "moco", "dim": 32}, "positives": ["hallucinator"]})
    assert (h.positives[0].dim, h.positives[0].hidden) == (32, 64)
    explicit = load_recipe({"method": {"name": "moco", "version": "v1", "temperature": 0.1, "mlp": True}})
    assert (explicit.method.temperature, explicit.method.mlp) == (0.1, True)  # never overridden


def test_resume_allow_list():
    from selfsup.config import to_dict
    from selfsup.engine.runinfo import check_resume_recipe

    saved = to_dict(load_recipe({"method": {"name": "moco"}}))
    check_resume_recipe(saved, load_recipe({"method": {"name": "moco"}, "train": {"epochs": 50}}), "x")
    check_resume_recipe(saved, load_recipe({"method": {"name": "moco"}, "eval": {"run": ["knn"]}}), "x")
    changed = load_recipe({"method": {"name": "moco"}, "optim": {"lr": 0.1}, "seed": 3})
    with pytest.raises(ConfigError, match=r"differs .* in optim.lr \(0.06 -> 0.1\), seed \(0 -> 3\)"):
        check_resume_recipe(saved, changed, "x")
