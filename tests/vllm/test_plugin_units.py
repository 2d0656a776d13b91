"""deploy/vllm-plugin's pure functions (no vLLM needed): the Whisper prompt and the segment parser."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "vllm-plugin"))

from megaasr_vllm_plugin.prompt import decoder_prompt
from megaasr_vllm_plugin.segments import split_segments

INIT, EOS = 50363, 50256  # tiny.en: <|0.00|>, <|endoftext|>


def ts(seconds: float) -> int:
    return INIT + round(seconds / 0.02)


def test_decoder_prompts() -> None:
    assert decoder_prompt("en", "transcribe", "", multilingual=False) == "<|startoftranscript|><|notimestamps|>"
    assert decoder_prompt("de", "transcribe", "", multilingual=True) == \
        "<|startoftranscript|><|de|><|transcribe|><|notimestamps|>"
    assert decoder_prompt("en", "transcribe", "  Dashwood ", multilingual=False) == \
        "<|startofprev|> Dashwood<|startoftranscript|><|notimestamps|>"
    with pytest.raises(ValueError):
        decoder_prompt(None, "transcribe", "", multilingual=True)


def test_closed_segments_keep_their_times() -> None:
    tokens = [1, 2, ts(3.0), ts(3.0), 3, ts(5.5), EOS]
    assert split_segments(tokens, INIT, EOS, 30.0) == [(0.0, 3.0, [1, 2], [0, 1]), (3.0, 5.5, [3], [4])]


def test_text_without_any_timestamp_is_kept_for_the_whole_chunk() -> None:
    assert split_segments([7, 8, 9, EOS], INIT, EOS, 30.0) == [(0.0, 30.0, [7, 8, 9], [0, 1, 2])]


def test_unclosed_last_segment_runs_to_the_chunk_end() -> None:
    tokens = [1, ts(4.0), ts(4.0), 2, 3, EOS]
    assert split_segments(tokens, INIT, EOS, 30.0) == [(0.0, 4.0, [1], [0]), (4.0, 30.0, [2, 3], [3, 4])]


@pytest.mark.parametrize("tokens", [[], [EOS], [ts(0.0), EOS]])
def test_empty_decodes_give_no_segments(tokens: list[int]) -> None:
    assert split_segments(tokens, INIT, EOS, 30.0) == []
