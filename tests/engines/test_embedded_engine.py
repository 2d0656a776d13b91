"""The embedded engine on real weights and real speech (slow tier)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from service.config import Settings
from service.engines.base import TranscriptionOptions
from service.engines.embedded import EmbeddedEngine, load_transcriber
from service.scoring import corpus_score

pytestmark = pytest.mark.slow


def read16k(path: Path) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    return x if sr == 16000 else soxr.resample(x, sr, 16000).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tiny_en_dir: Path):
    return load_transcriber(tiny_en_dir, Settings(threads=2))


@pytest.fixture(scope="module")
def base(base_dir: Path):
    return load_transcriber(base_dir, Settings(threads=2))


def _wer(transcriber, librivox, beam_size: int = 1) -> float:
    audios = [read16k(p) for p, _ in librivox]
    results = transcriber.transcribe(audios, [TranscriptionOptions(language="en", beam_size=beam_size)] * len(audios))
    return corpus_score([(ref, r.text) for (_, ref), r in zip(librivox, results)]).wer


def test_tiny_en_librivox_wer(tiny, librivox) -> None:
    assert _wer(tiny, librivox) <= 0.06


def test_base_librivox_wer(base, librivox) -> None:
    assert _wer(base, librivox) <= 0.03


def test_tiny_en_beam_search_on_real_speech(tiny, librivox) -> None:
    assert _wer(tiny, librivox, beam_size=5) <= 0.06


def test_beam_search_batched_equals_one_by_one(tiny, librivox) -> None:
    """Each window's beams stay its own when windows of several requests are decoded together."""
    audios = [read16k(p) for p, _ in librivox]
    opts = TranscriptionOptions(language="en", beam_size=4)
    batched = [r.text for r in tiny.transcribe(audios, [opts] * len(audios))]
    assert batched == [tiny.transcribe([a], [opts])[0].text for a in audios]


def test_best_of_batched_equals_one_by_one_and_stays_accurate(tiny, librivox) -> None:
    """Sampled decodes (temperature 0.6, seeded) keep the most likely of 3 samples per window, the same
    whatever else is in the batch; on clean speech that is still close to the reference."""
    audios = [read16k(p) for p, _ in librivox]
    opts = TranscriptionOptions(language="en", temperatures=(0.6,), best_of=3, seed=11)
    batched = [r.text for r in tiny.transcribe(audios, [opts] * len(audios))]
    assert batched == [tiny.transcribe([a], [opts])[0].text for a in audios]
    assert corpus_score([(ref, hyp) for (_, ref), hyp in zip(librivox, batched)]).wer <= 0.10


def test_base_detects_english(base, librivox) -> None:
    result = base.transcribe([read16k(librivox[0][0])], [TranscriptionOptions()])[0]
    assert result.language == "en" and result.language_probability > 0.5


def test_batched_equals_one_by_one(tiny, librivox) -> None:
    audios = [read16k(p) for p, _ in librivox]
    batched = [r.text for r in tiny.transcribe(audios, [TranscriptionOptions()] * len(audios))]
    single = [tiny.transcribe([a], [TranscriptionOptions()])[0].text for a in audios]
    assert batched == single


def test_long_audio_no_word_lost_or_doubled(tiny, librivox) -> None:
    """~80 s of speech over three windows: the long-form text matches the clips decoded one by one.

    Comparing with the short-form decodes (not the human reference) isolates what window borders do:
    a word lost or doubled at a border shows up as a deletion or insertion against them.
    """
    pause = np.zeros(8000, dtype=np.float32)
    clips = [read16k(p) for p, _ in librivox]
    short = [r.text for r in tiny.transcribe(clips, [TranscriptionOptions(language="en")] * len(clips))]
    long = np.concatenate([np.concatenate([a, pause]) for a in clips * 3])
    result = tiny.transcribe([long], [TranscriptionOptions(language="en")])[0]
    against_short = corpus_score([(" ".join(short * 3), result.text)])
    assert against_short.deletions + against_short.insertions <= 2, result.text
    reference = " ".join(ref for _, ref in librivox * 3)
    assert corpus_score([(reference, result.text)]).wer <= 0.06
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts)
    assert all(s.end >= s.start for s in result.segments)
    assert result.segments[-1].end <= len(long) / 16000 + 0.01
    assert result.segments[-1].end > len(long) / 16000 - 5  # the last window was transcribed
    assert len({s.seek for s in result.segments}) >= 3  # three or more windows were decoded


def test_silence_gives_empty_text(tiny, base) -> None:
    silence = np.zeros(16000 * 10, dtype=np.float32)
    for model in (tiny, base):
        assert model.transcribe([silence], [TranscriptionOptions()])[0].text == ""


def test_near_silence_gives_empty_text(tiny) -> None:
    """Very quiet dither (above the digital-silence gate) must go through the no-speech guard."""
    dither = (np.random.default_rng(1).standard_normal(16000 * 8) * 3e-3).astype(np.float32)
    # Fallback temperatures sample, so repeat: the guard must hold whatever the sampler draws.
    for _ in range(4):
        result = tiny.transcribe([dither], [TranscriptionOptions()])[0]
        assert result.text == "", result.text


@pytest.mark.parametrize("clip", ["vinyl_hiss", "loop_3d_printer", "ambi_drone", "loop_industrial"])
def test_real_noise_gives_empty_text(tiny, base, clip: str) -> None:
    noise = read16k(Path(f"/usr/share/sonic-pi/samples/{clip}.flac"))
    for model in (tiny, base):
        result = model.transcribe([noise], [TranscriptionOptions()])[0]
        assert result.text == "", (clip, result.text)


def test_engine_batches_concurrent_requests(tiny_en_dir: Path, librivox) -> None:
    settings = Settings(threads=2, max_batch_size=8, batch_wait_ms=200)
    engine = EmbeddedEngine(tiny_en_dir, "whisper-tiny.en", settings)
    sizes: list[int] = []

    async def run() -> list[str]:
        await engine.start()
        original = engine._run_batch

        def spy(items):
            sizes.append(len(items))
            return original(items)

        engine._batcher._fn = spy
        try:
            audios = [read16k(p) for p, _ in librivox]
            results = await asyncio.gather(*(engine.transcribe([a], [TranscriptionOptions()]) for a in audios))
            return [r[0].text for r in results]
        finally:
            await engine.close()

    texts = asyncio.run(run())
    assert all(texts) and max(sizes) > 1, sizes


def test_confidence_gate_drops_only_windows_below_it(tiny_en_dir: Path, librivox) -> None:
    """The robust path's gate (a bundle's robust_logprob_gate) acts on the window's own mean log-prob."""
    from service.engines.transcriber import GuardConfig

    audio = read16k(librivox[0][0])
    open_ = load_transcriber(tiny_en_dir, Settings(threads=2))
    assert open_.guards.min_avg_logprob is None  # the base path has no such gate
    heard = open_.transcribe([audio], [TranscriptionOptions(language="en")])[0]
    confidence = heard.segments[0].avg_logprob
    assert heard.text and all(s.avg_logprob == confidence for s in heard.segments)  # one window
    open_.guards = GuardConfig(min_avg_logprob=confidence - 0.05)
    assert open_.transcribe([audio], [TranscriptionOptions(language="en")])[0].text == heard.text
    open_.guards = GuardConfig(min_avg_logprob=confidence + 0.05)
    dropped = open_.transcribe([audio], [TranscriptionOptions(language="en")])[0]
    assert dropped.text == "" and dropped.extras["dropped_windows"] == 1


def test_the_robust_path_gets_the_bundles_gate_and_the_base_path_none(tiny_en_dir: Path) -> None:
    from dataclasses import replace

    from service.models.bundle import load_bundle

    shipped = load_bundle(Path(__file__).resolve().parents[2] / "checkpoints" / "whisper-tiny.en-robust")
    engine = EmbeddedEngine(tiny_en_dir, "whisper-tiny.en", Settings(threads=2),
                            robust=replace(shipped, robust_logprob_gate=-1.5))
    assert engine._load_robust().guards.min_avg_logprob == -1.5
    assert engine._load().guards.min_avg_logprob is None


def test_no_speech_probe_reads_what_the_model_itself_reports(tiny, base, librivox) -> None:
    """The probe is the decoder's own no-speech reading, taken from another model: whisper-base decoding
    with tiny.en as its probe records tiny.en's own no-speech probability for the same window."""
    from service.engines.no_speech_probe import NoSpeechProbe

    audio = read16k(librivox[0][0])
    options = [TranscriptionOptions(language="en")]
    own = tiny.transcribe([audio], options)[0]
    assert own.segments and len({s.seek for s in own.segments}) == 1  # one window
    base.probe = NoSpeechProbe(tiny.runner, tiny.vocab, 0.999)
    try:
        probed = base.transcribe([audio], options)[0]
    finally:
        base.probe = None
    assert probed.extras["base_no_speech_probs"] == [pytest.approx(own.segments[0].no_speech_prob, abs=1e-4)]
    assert probed.extras["no_speech_gated_windows"] == 0
    assert probed.text == base.transcribe([audio], options)[0].text
    # language not given: whisper-base detects it with its own encoder first, and the probe reads after that
    base.probe = NoSpeechProbe(tiny.runner, tiny.vocab, 0.999)
    try:
        detected = base.transcribe([audio], [TranscriptionOptions()])[0]
    finally:
        base.probe = None
    assert detected.language == "en"
    assert detected.extras["base_no_speech_probs"] == probed.extras["base_no_speech_probs"]


def test_no_speech_gate_skips_exactly_the_windows_above_it(tiny, base, librivox) -> None:
    from service.engines.no_speech_probe import NoSpeechProbe

    audio = read16k(librivox[0][0])
    options = [TranscriptionOptions(language="en")]
    heard = base.transcribe([audio], options)[0]
    p = tiny.transcribe([audio], options)[0].segments[0].no_speech_prob
    assert heard.text and 0.0 < p < 0.5  # speech: the probe says so
    try:
        base.probe = NoSpeechProbe(tiny.runner, tiny.vocab, p + 1e-3)
        assert base.transcribe([audio], options)[0].text == heard.text
        base.probe = NoSpeechProbe(tiny.runner, tiny.vocab, max(p - 1e-3, 1e-6))
        skipped = base.transcribe([audio], options)[0]
    finally:
        base.probe = None
    assert skipped.text == "" and skipped.segments == [] and skipped.extras["no_speech_gated_windows"] == 1


def test_the_robust_path_gets_the_bundles_no_speech_probe_on_the_base_model(tiny_en_dir: Path) -> None:
    from dataclasses import replace

    from service.models.bundle import load_bundle

    shipped = load_bundle(Path(__file__).resolve().parents[2] / "checkpoints" / "whisper-tiny.en-robust")
    engine = EmbeddedEngine(tiny_en_dir, "whisper-tiny.en", Settings(threads=2),
                            robust=replace(shipped, robust_no_speech_gate=0.7))

    async def run() -> tuple:
        await engine.start()
        try:
            return engine._transcriber, engine._robust
        finally:
            await engine.close()

    base_path, robust_path = asyncio.run(run())
    assert base_path.probe is None
    assert robust_path.probe is not None and robust_path.probe.threshold == 0.7
    assert robust_path.probe.runner is base_path.runner  # the base model's head, no third copy
    engine = EmbeddedEngine(tiny_en_dir, "whisper-tiny.en", Settings(threads=2, robust_no_speech_gate="off"),
                            robust=replace(shipped, robust_no_speech_gate=0.7))
    assert asyncio.run(run())[1].probe is None  # the operator turned it off


def test_no_speech_probe_refuses_a_threshold_outside_zero_one(tiny) -> None:
    from service.engines.no_speech_probe import NoSpeechProbe

    for bad in (0.0, 1.0, -0.1, 2.0):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            NoSpeechProbe(tiny.runner, tiny.vocab, bad)


def test_a_robust_ensemble_is_loaded_decoded_and_voted(tiny_en_dir: Path, librivox, tmp_path: Path) -> None:
    """Three copies of one adapter vote unanimously, so the ensemble answers exactly as the adapter alone;
    each member is its own merged model, and robust_ensemble = "off" loads none."""
    import json
    import shutil

    from service.models.bundle import load_bundle

    shipped = Path(__file__).resolve().parents[2] / "checkpoints" / "whisper-tiny.en-robust"
    root = tmp_path / "bundle"
    shutil.copytree(shipped, root)
    for name in ("members/1", "members/2"):
        shutil.copytree(shipped / "adapter", root / name)
    meta = json.loads((root / "bundle.json").read_text())
    (root / "bundle.json").write_text(json.dumps({**meta, "ensemble": ["members/1", "members/2"]}))
    audio = read16k(librivox[0][0])
    opts = TranscriptionOptions(language="en", adapter="robust")

    async def run(settings: Settings, bundle) -> tuple:
        engine = EmbeddedEngine(tiny_en_dir, "whisper-tiny.en", settings, robust=bundle)
        await engine.start()
        try:
            result = (await engine.transcribe([audio], [opts]))[0]
            return result, list(engine._members), engine._robust
        finally:
            await engine.close()

    voted, members, robust = asyncio.run(run(Settings(threads=2), load_bundle(root)))
    alone, none, _ = asyncio.run(run(Settings(threads=2, robust_ensemble="off"), load_bundle(root)))
    assert len(members) == 2 and none == []
    assert len({id(robust.runner.model), *(id(m.runner.model) for m in members)}) == 3
    assert all(m.probe is robust.probe for m in members)
    assert voted.text == alone.text and voted.text.strip() and voted.adapter == "robust"
    assert "ensemble_voted" not in voted.extras  # unanimous: the main result is served as it is
    (root / "bundle.json").write_text(json.dumps({**meta, "ensemble": ["members/1", "members/2"],
                                                  "ensemble_pick": "likelihood"}))
    picked, _, _ = asyncio.run(run(Settings(threads=2), load_bundle(root)))
    assert picked.text == alone.text and "ensemble_pick" not in picked.extras  # one candidate: nothing to score


def test_real_models_find_the_true_transcript_likeliest(tiny, librivox) -> None:
    """The likelihood pick on real weights and speech: tiny.en scores the reference of a LibriVox clip above
    two corrupted transcripts of it and answers the result that carries it (scores by teacher forcing)."""
    from dataclasses import replace

    from service.engines.candidate_scores import window_scores
    from service.engines.ensemble_pick import ensemble_answer

    reference, audio = librivox[0][1], read16k(librivox[0][0])
    decoded = tiny.transcribe([audio], [TranscriptionOptions(language="en")])[0]
    words = reference.split()
    swapped = " ".join(words[len(words) // 2:] + words[:len(words) // 2])
    dropped = " ".join(words[::2])
    scores = window_scores(tiny.runner.model, tiny.log_mel, tiny.vocab, tiny.tokenizer, audio,
                           [reference, swapped, dropped, ""])
    assert scores[0] > max(scores[1:]) and all(s < 0 for s in scores)
    results = [replace(decoded, text=swapped), replace(decoded, text=reference), replace(decoded, text=dropped)]
    answer = ensemble_answer(results, audio, "likelihood", [tiny, tiny, tiny])
    assert answer.text == reference and answer.extras["ensemble_pick"] == "likelihood"
