"""Variants trained side by side must share the clips and base model and keep their outputs apart."""

from __future__ import annotations

import pytest

from training.config import CONFIG_DIR
from training.variants import main, variant_dirs

GPU2 = [CONFIG_DIR / "tiny-en-gpu-r64.toml", CONFIG_DIR / "tiny-en-gpu-r64-lr2.toml"]


def test_the_gpu_run_2_variants_share_the_clips_and_not_the_folders():
    rows = variant_dirs(GPU2)
    assert [r[0] for r in rows] == ["tiny-en-gpu-r64", "tiny-en-gpu-r64-lr2"]
    assert rows[0][1:] == ("runs/gpu/r64/sft", "runs/gpu/r64/eval")
    assert rows[1][1:] == ("runs/gpu/r64-lr2/sft", "runs/gpu/r64-lr2/eval")


@pytest.mark.parametrize(("extra", "reason"), [
    ("[data]\ntrain_copies = 5\n", "other clips"),
    ('[sft]\nbase_model = "whisper-base"\n', "adapts whisper-base"),
    ("", "distinct \\[sft\\] and \\[eval\\] out_dir"),
])
def test_variants_that_cannot_share_one_data_stage_are_refused(tmp_path, extra, reason):
    variant = tmp_path / "v.toml"
    variant.write_text(f'extends = "{GPU2[0]}"\n{extra}')
    with pytest.raises(ValueError, match=reason):
        variant_dirs([GPU2[0], variant])


def test_the_command_line_exits_2_with_the_reason(capsys):
    assert main([str(GPU2[0]), str(GPU2[0])]) == 2
    assert "distinct file names" in capsys.readouterr().err
    assert main([str(p) for p in GPU2]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "tiny-en-gpu-r64-lr2 runs/gpu/r64-lr2/sft runs/gpu/r64-lr2/eval"
