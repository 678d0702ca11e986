import dataclasses
import re

import pytest

from iam_tutorial.config import FULL, QUICK, get_config


def test_presets_and_overrides(monkeypatch):
    assert get_config("quick") == QUICK and get_config("FULL") == FULL
    monkeypatch.setenv("IAM_MODE", "full")
    assert get_config().mode == "full"
    assert get_config("quick", plan="token").plan == "token"
    with pytest.raises(ValueError, match="Unknown mode"):
        get_config("huge")
    with pytest.raises(ValueError, match="Unknown config fields"):
        get_config("quick", n_layers=3)


def test_full_is_quick_with_visible_differences():
    changed = {
        f.name for f in dataclasses.fields(QUICK) if getattr(QUICK, f.name) != getattr(FULL, f.name)
    }
    assert {"mode", "n_users", "n_embd", "n_layer"} <= changed
    assert FULL.n_users is None and QUICK.n_users <= 2999  # QUICK fits the CI copy of ML-1M


def test_str_is_sorted_and_stable():
    text = str(QUICK)
    keys = re.findall(r"(\w+)=", text)
    assert keys == sorted(keys) and text == str(get_config("quick"))
