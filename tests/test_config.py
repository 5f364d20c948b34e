"""Config schema, prefabs, overrides, diff, save-as, estimates."""

from __future__ import annotations

import pytest
import yaml

from nanochat_tui.config import (
    ConfigError,
    apply_overrides,
    diff,
    list_prefabs,
    load_config,
    load_prefab,
    save_prefab,
    validate_patch,
)
from nanochat_tui.config.estimates import compatibility_matrix, num_params
from nanochat_tui.config.loader import field_error, known_keys, parse_value


def test_bundled_prefabs_load_and_match_nanochat_sizes():
    prefabs = list_prefabs()
    assert {"tiny", "ten", "hundred", "thousand"} <= set(prefabs)
    # nanochat reference sizes: d20 ≈ 561M, d32 ≈ 1.88B params (vocab 65,536)
    assert round(num_params(load_prefab("hundred").model) / 1e6) == 561
    assert round(num_params(load_prefab("thousand").model) / 1e9, 2) == 1.88
    tiny = load_prefab("tiny")
    assert tiny.model.model_dim == 128 and tiny.data.source == "embedded"
    for name in prefabs:
        cfg = load_prefab(name)
        assert cfg.description and cfg.hardware, f"{name} needs a description and hardware"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.depht=3", "did you mean 'model.depth'"),
        ("model.depth=-1", "model.depth"),
        ("model.depth=abc", "model.depth"),
        ("optim.matrix_lr=0", "optim.matrix_lr"),
        ("train.device_batch_size=7", "multiple of"),
        ("data.format=csv", "data.format"),
        ("nokey", "not key=value"),
    ],
)
def test_bad_overrides_are_rejected_with_a_message(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    assert message in str(err.value)


def test_overrides_parse_types_and_apply():
    cfg = load_config("tiny", ["model.depth=4", "optim.matrix_lr=3e-2", "run.name=abc"])
    assert cfg.model.depth == 4 and cfg.model.model_dim == 256
    assert cfg.optim.matrix_lr == pytest.approx(0.03)
    assert cfg.run.name == "abc"
    assert parse_value("true") is True and parse_value("") is None and parse_value("12") == 12


def test_diff_and_save_as_roundtrip():
    base = load_prefab("tiny")
    cur = apply_overrides(base, {"model.depth": 3, "train.num_iterations": 10})
    assert base.train.num_iterations != 10
    assert [(k, a, b) for k, a, b in diff(base, cur)] == [
        ("model.depth", 2, 3),
        ("train.num_iterations", base.train.num_iterations, 10),
    ]
    path = save_prefab(cur, "mine")
    assert path.exists() and "mine" in list_prefabs()
    assert load_prefab("mine").model.depth == 3
    with pytest.raises(FileExistsError):
        save_prefab(cur, "mine")
    save_prefab(base, "mine", overwrite=True)
    assert load_prefab("mine").model.depth == 2
    with pytest.raises(ConfigError):
        save_prefab(cur, "bad name!")


def test_invalid_yaml_prefab_gives_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  depth: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_prefab(str(bad))
    with pytest.raises(ConfigError, match="no prefab named 'tinyy' — did you mean 'tiny'"):
        load_prefab("tinyy")


def test_patch_only_allows_live_fields():
    cfg = load_prefab("tiny")
    assert validate_patch(cfg, {"optim.lr_multiplier": 0.5}).optim.lr_multiplier == 0.5
    with pytest.raises(ConfigError, match=r"cannot change model\.depth during a run"):
        validate_patch(cfg, {"model.depth": 4})
    with pytest.raises(ConfigError):
        validate_patch(cfg, {"optim.lr_multiplier": -1})


def test_field_error_for_inline_validation():
    cfg = load_prefab("tiny")
    assert field_error(cfg, "model.depth", "3") is None
    assert "greater than or equal to 1" in field_error(cfg, "model.depth", "0")
    assert "head_dim" in field_error(cfg, "model.head_dim", "48")


def test_known_keys_cover_sections_and_estimates():
    keys = known_keys()
    assert "model.depth" in keys and "telemetry.wandb.enabled" in keys
    rows = compatibility_matrix(load_prefab("ten"))
    h100 = next(r for r in rows if r.accelerator == "1× H100")
    eight = next(r for r in rows if r.accelerator == "8× H100")
    assert h100.hours == pytest.approx(8 * eight.hours)
    assert 0.1 < eight.hours < 3  # d12 on 8×H100: minutes, not days


@pytest.mark.parametrize("name", ["1e5", "yes", "on", ".inf", "0x10", "null", "1:30", "12"])
def test_saved_configs_read_back_identically(name):
    """Strings that look like numbers or booleans to YAML 1.1 or 1.2 are quoted when written."""
    from nanochat_tui.config import to_yaml
    from nanochat_tui.config.loader import validate
    from nanochat_tui.config.safe_yaml import parse

    cfg = load_config("tiny", [f"data.text_field={name!r}"] if name == "12" else [])
    cfg = cfg.model_copy(update={"description": name, "hardware": name})
    cfg.run.name = name
    again = validate(parse(to_yaml(cfg)))
    assert again == cfg
    assert yaml.safe_load(to_yaml(cfg))["run"]["name"] == name  # a YAML 1.1 reader agrees
