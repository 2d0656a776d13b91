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


def test_rl_variants_are_checked_on_their_rl_folders(tmp_path, capsys):
    gpu3 = [CONFIG_DIR / "tiny-en-gpu-rl.toml", CONFIG_DIR / "tiny-en-gpu-rl-lr4.toml"]
    rows = variant_dirs(gpu3, stage="rl")
    assert [r[1] for r in rows] == ["runs/gpu-rl/rl", "runs/gpu-rl-lr4/rl"]
    same_rl = tmp_path / "same-rl.toml"  # other [sft] and [eval] folders, the same [rl] one
    same_rl.write_text(f'extends = "{gpu3[0]}"\n[sft]\nout_dir = "x/sft"\n[eval]\nout_dir = "x/eval"\n')
    variant_dirs([gpu3[0], same_rl])  # fine when only SFT trains
    with pytest.raises(ValueError, match=r"distinct \[rl\]"):
        variant_dirs([gpu3[0], same_rl], stage="rl")
    assert main(["--stage", "rl", *map(str, gpu3)]) == 0
    assert capsys.readouterr().out.split()[1] == "runs/gpu-rl/rl"
    assert main(["--stage", "dpo", str(gpu3[0])]) == 2
