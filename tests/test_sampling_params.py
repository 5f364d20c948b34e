"""Sampling settings: one range check shared by the Chat pane and the chat/eval commands."""

from __future__ import annotations

import pytest

from nanochat_tui.cli import main
from nanochat_tui.sampling_params import check_field


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [("temperature", "0", 0.0), ("temperature", " 1.5 ", 1.5), ("top_k", "0", 0)],
)
def test_good_values_parse(name, text, value):
    assert check_field(name, text) == (value, None)


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("temperature", "hot", "temperature: 'hot' is not a number"),
        ("temperature", "-1", "temperature: -1 is out of range"),
        ("temperature", "nan", "temperature: nan is out of range"),
        ("top_k", "2.5", "top-k: '2.5' is not a whole number"),
        ("max_tokens", "0", "max tokens: 0 is out of range"),
    ],
)
def test_bad_values_say_which_field_and_why(name, text, reason):
    value, error = check_field(name, text)
    assert value is None and error.startswith(reason)


@pytest.mark.parametrize("command", ["eval", "chat"])
def test_negative_temperature_refused_before_loading(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(tmp_path), "--temperature", "-1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "temperature: -1 is out of range" in err and "loading" not in err
