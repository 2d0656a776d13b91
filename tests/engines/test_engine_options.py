"""Engine speed options keep the output: int8, padding trim, the projection cache, masked batches.

Accuracy only; nothing here measures time (docs/benchmarks.md has the speed).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from service.config import Settings
from service.engines.base import TranscriptionOptions
from service.engines.embedded import load_transcriber
from service.engines.features import N_FRAMES
from service.engines.transcriber import WindowConfig
from service.scoring import corpus_score
from tests.engines.test_embedded_engine import read16k


def test_window_frames_rule() -> None:
    off = WindowConfig(trim=False)
    assert off.frames(300) == N_FRAMES
    on = WindowConfig(trim=True, margin_frames=500, quantum_frames=100)
    assert on.frames(250) == 800  # 2.5 s of audio + 5 s, rounded up to whole seconds
    assert on.frames(2600) == N_FRAMES  # never more than the model's 30 s
    assert on.frames(N_FRAMES) == N_FRAMES
    assert all(on.frames(n) % 2 == 0 for n in range(1, N_FRAMES))  # the encoder halves the frames


@pytest.fixture(scope="module")
def fp32(tiny_en_dir: Path):
    """The fp32 tiny.en transcriber without padding trim: the reference the options are held to."""
    return load_transcriber(tiny_en_dir, Settings(threads=2, trim_padding=False))


@pytest.fixture(scope="module")
def audios(librivox):
    return [read16k(p) for p, _ in librivox]


@pytest.mark.slow
class TestWithTinyEn:
    def _texts(self, transcriber, audios) -> list[str]:
        return [r.text for r in transcriber.transcribe(audios, [TranscriptionOptions(language="en")] * len(audios))]

    def test_int8_transcribes_librivox(self, tiny_en_dir: Path, librivox, audios) -> None:
        int8 = load_transcriber(tiny_en_dir, Settings(threads=2, compute_type="int8"))
        assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in int8.runner.model.modules())
        assert type(int8.runner.proj_out) is torch.nn.Linear  # the vocabulary projection stays fp32
        texts = self._texts(int8, audios)
        assert corpus_score([(ref, t) for (_, ref), t in zip(librivox, texts)]).wer <= 0.06, texts

    def test_trimmed_padding_keeps_the_accuracy(self, tiny_en_dir: Path, librivox, audios) -> None:
        """Not the identical text: measured, some of these 5 clips change by a word (docs/benchmarks.md)."""
        trimmed = load_transcriber(tiny_en_dir, Settings(threads=2, trim_padding=True, trim_margin_s=5.0))
        assert trimmed.window.trim and trimmed.window.margin_frames == 500
        results = trimmed.transcribe(audios, [TranscriptionOptions(language="en")] * len(audios))
        assert corpus_score([(ref, r.text) for (_, ref), r in zip(librivox, results)]).wer <= 0.08  # 7.0 % seen
        for audio, result in zip(audios, results):
            assert result.segments and result.segments[-1].end <= len(audio) / 16000 + 0.01

    def test_projection_cache_matches_and_follows_weight_changes(self, fp32) -> None:
        runner = fp32.runner
        x = torch.randn(2, 1, runner.d_model)
        with torch.inference_mode():
            assert torch.allclose(runner._logits(x), runner.proj_out(x), atol=1e-4)
        weight = runner.proj_out.weight
        saved = weight.detach().clone()
        try:
            with torch.no_grad():
                weight.mul_(0.5)  # what merging an adapter in place does to a weight
            with torch.inference_mode():
                assert torch.allclose(runner._logits(x), runner.proj_out(x), atol=1e-4)
        finally:
            with torch.no_grad():
                weight.copy_(saved)

    def test_masked_rows_decode_as_alone(self, fp32, audios) -> None:
        """Rows of different encoder lengths in one batch give what each gives alone."""
        fp32.window = WindowConfig(trim=True, margin_frames=500)
        try:
            batched = self._texts(fp32, audios)
            alone = [self._texts(fp32, [a])[0] for a in audios]
        finally:
            fp32.window = WindowConfig(trim=False)
        assert batched == alone
