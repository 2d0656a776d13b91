"""A recipe may extend another: tables merge key by key, arrays and values are replaced, cycles are refused."""

from __future__ import annotations

import pydantic
import pytest

from training.config import load_config, merge_tables

BASE = """
[data]
out_dir = "runs/x/data"
train_copies = 3

[sft]
out_dir = "runs/x/sft"
batch_size = 8

[sft.lora]
r = 8
alpha = 16

[[sft.phases]]
name = "I"
scope = "upper_encoder"
lr_encoder = 1e-3

[[sft.phases]]
name = "II"
scope = "decoder"
lr_decoder = 3e-4
"""


def test_tables_merge_and_everything_else_is_replaced():
    base = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": [1, 2], "g": 4}
    assert merge_tables(base, {"a": {"c": {"e": 30}}, "f": [9], "h": 5}) == {
        "a": {"b": 1, "c": {"d": 2, "e": 30}}, "f": [9], "g": 4, "h": 5}
    assert base["a"]["c"]["e"] == 3  # the base is not modified


def test_a_variant_changes_only_what_it_names(tmp_path):
    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "variant.toml").write_text('extends = "base.toml"\n[sft]\nout_dir = "runs/y/sft"\n'
                                           '[sft.lora]\nr = 64\nalpha = 128\n')
    base, variant = load_config(tmp_path / "base.toml"), load_config(tmp_path / "variant.toml")
    assert (variant.sft.lora.r, variant.sft.lora.alpha, variant.sft.out_dir) == (64, 128, "runs/y/sft")
    assert variant.data == base.data
    assert variant.sft.batch_size == 8 and variant.sft.lora.dropout == base.sft.lora.dropout
    assert variant.sft.phases == base.sft.phases
    assert variant.sft.model_dump(exclude={"lora", "out_dir"}) == base.sft.model_dump(exclude={"lora", "out_dir"})


def test_chains_resolve_from_each_files_folder_and_phases_are_replaced_whole(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "sub" / "mid.toml").write_text('extends = "../base.toml"\n[data]\ntrain_copies = 6\n')
    (tmp_path / "sub" / "top.toml").write_text('extends = "mid.toml"\n[[sft.phases]]\nname = "only"\n'
                                               'scope = "joint"\n')
    top = load_config(tmp_path / "sub" / "top.toml")
    assert top.data.train_copies == 6 and top.data.out_dir == "runs/x/data"
    assert [p.name for p in top.sft.phases] == ["only"]


def test_a_cycle_or_a_bad_key_is_a_clear_error(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ValueError, match="extends itself"):
        load_config(tmp_path / "a.toml")
    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "typo.toml").write_text('extends = "base.toml"\n[sft.lora]\nrank = 64\n')
    with pytest.raises(pydantic.ValidationError, match="rank"):
        load_config(tmp_path / "typo.toml")
    (tmp_path / "num.toml").write_text("extends = 3\n")
    with pytest.raises(TypeError, match="must be a file name"):
        load_config(tmp_path / "num.toml")

