"""The SFT pool: WER grading, the clean share, and per-effect oversampling (pure; no model)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from training.config import PhaseConfig, SFTConfig
from training.sft import sft_pool


def _row(i: int, scenario: str, effects: list[str], wer: float) -> dict:
    return {"id": f"c{i}", "scenario": scenario, "effects": effects, "base_wer": wer}


ROWS = [
    _row(0, "crosstalk", ["crosstalk"], 0.2),
    _row(1, "far_field_crosstalk", ["far_field", "crosstalk"], 0.9),
    _row(2, "noise", ["noise"], 0.4),
    _row(3, "noise_stutter", ["noise", "stutter"], 0.1),
    *[_row(10 + i, "clean", [], 0.0) for i in range(4)],
]


def ids(pool: list[dict]) -> list[str]:
    return sorted(r["id"] for r in pool)


def test_oversampling_repeats_clips_with_the_effect_and_keeps_the_wer_grade() -> None:
    plain = sft_pool(ROWS, clean_fraction=0.5, max_wer=1.0, seed=0)
    weighted = sft_pool(ROWS, clean_fraction=0.5, max_wer=1.0, seed=0, effect_oversampling={"crosstalk": 3})
    assert [r["id"] for r in plain].count("c0") == 1
    assert [r["id"] for r in weighted].count("c0") == 3
    assert [r["id"] for r in weighted].count("c1") == 3  # a compound with the effect counts too
    assert [r["id"] for r in weighted].count("c2") == 1
    # the clean share is sized on the clips as drawn (4 degraded x 0.5), not on the repeated pool
    assert sum(r["scenario"] == "clean" for r in weighted) == sum(r["scenario"] == "clean" for r in plain) == 2
    graded = sft_pool(ROWS, clean_fraction=0.0, max_wer=0.5, seed=0, effect_oversampling={"crosstalk": 3})
    assert ids(graded) == ["c0", "c0", "c0", "c2", "c3"]  # c1 (WER 0.9) stays out of the < 50 % stage


def test_the_largest_factor_among_a_clips_effects_wins() -> None:
    pool = sft_pool(ROWS, clean_fraction=0.0, max_wer=1.0, seed=0,
                    effect_oversampling={"noise": 2, "stutter": 4})
    assert [r["id"] for r in pool].count("c3") == 4
    assert [r["id"] for r in pool].count("c2") == 2


def test_rows_without_an_effects_field_work_with_and_without_oversampling() -> None:
    bare = [{k: v for k, v in r.items() if k != "effects"} for r in ROWS]  # older manifests, test fixtures
    assert ids(sft_pool(bare, 0.0, 1.0, 0)) == ["c0", "c1", "c2", "c3"]
    weighted = sft_pool(bare, 0.0, 1.0, 0, effect_oversampling={"crosstalk": 2})
    assert ids(weighted) == ["c0", "c0", "c1", "c1", "c2", "c3"]  # effects parsed from the scenario name


def _sft(**kwargs) -> SFTConfig:
    return SFTConfig(phases=[PhaseConfig(name="joint", scope="joint")], **kwargs)


def test_effect_names_are_checked_and_public_names_map_to_internal_ones() -> None:
    assert _sft(effect_oversampling={"recording": 2}).effect_oversampling == {"crosstalk": 2}
    with pytest.raises(ValidationError, match="unknown atomic effect 'babble'"):
        _sft(effect_oversampling={"babble": 2})
    with pytest.raises(ValidationError):
        _sft(effect_oversampling={"crosstalk": 0})
