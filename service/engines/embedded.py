"""The embedded engine: transformers + torch in-process, on the CPU by default.

Loads one Hugging Face Whisper checkpoint once, decodes off the event loop on a single worker
thread, and micro-batches concurrent requests (see :mod:`service.engines.batcher`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import numpy as np

from service.config import Settings
from service.engines.base import Adapter, Engine, ModelInfo, TranscriptionOptions, TranscriptionResult
from service.errors import InvalidRequest, Unavailable
from service.models.bundle import Bundle, served_no_speech_gate

log = logging.getLogger(__name__)


class EmbeddedEngine(Engine):
    """Base model, plus the robust model when a checkpoint bundle is given.

    The robust model is the bundle's peft adapter merged into a second copy of the base weights at
    load (or the bundle's ``merged/`` folder when it has no adapter). Two copies cost memory (tiny:
    150 MB, base: 290 MB in fp32) but keep both paths at full speed and let one micro-batch hold
    requests for either: the batch is split by adapter before decoding.

    A bundle with ``ensemble`` members (and ``robust_ensemble = "bundle"``) loads one more merged copy per
    member; robust requests are decoded by the main adapter and by each member, with the same gates, and
    answered with one of their transcripts or their ROVER vote, as the bundle's ``ensemble_pick`` says
    (:func:`service.engines.ensemble_pick.ensemble_answer`).
    """

    def __init__(self, model_path: Path, model_id: str, settings: Settings, robust: Bundle | None = None) -> None:
        self._path = Path(model_path)
        self._id = model_id
        self._settings = settings
        self._robust_source = robust if robust is not None and robust.has_robust else None
        self._transcriber = None
        self._robust = None
        self._members: list = []
        self._batcher = None
        self._multilingual = False
        self.load_seconds: float | None = None

    @property
    def info(self) -> ModelInfo:
        adapters: tuple[Adapter, ...] = ("base", "robust") if self._robust is not None else ("base",)
        return ModelInfo(id=self._id, path=str(self._path), multilingual=self._multilingual, adapters=adapters)

    @property
    def ready(self) -> bool:
        return self._transcriber is not None and self._batcher is not None

    @property
    def vocabulary(self):
        if self._transcriber is None:
            raise Unavailable("The model is not loaded yet.")
        return self._transcriber.vocab

    async def start(self) -> None:
        from service.engines.batcher import MicroBatcher

        loop = asyncio.get_running_loop()
        started = time.monotonic()
        self._transcriber = await loop.run_in_executor(None, self._load)
        if self._robust_source is not None:
            self._robust = await loop.run_in_executor(None, self._load_robust)
            self._robust.probe = robust_probe(
                served_no_speech_gate(self._settings.robust_no_speech_gate, self._robust_source), self._transcriber)
            self._members = await loop.run_in_executor(None, self._load_members)
            for member in self._members:
                member.probe = self._robust.probe  # one probe on the base model serves every member
        self.load_seconds = time.monotonic() - started
        self._multilingual = self._transcriber.vocab.multilingual
        self._batcher = MicroBatcher(
            self._run_batch, max_batch=self._settings.max_batch_size,
            max_wait_ms=self._settings.batch_wait_ms, max_queue=self._settings.max_queue,
            retry_after_s=self._settings.retry_after_s, on_batch=self._observe_batch)
        self._batcher.start()
        log.info("loaded %s from %s in %.1f s", self._id, self._path, self.load_seconds)

    def _load(self):
        return load_transcriber(self._path, self._settings)

    def _load_robust(self):
        source = self._robust_source
        assert source is not None
        if source.adapter is not None:
            log.info("merging the robust LoRA adapter %s into %s", source.adapter, self._id)
            return load_transcriber(self._path, self._settings, adapter=source.adapter,
                                    min_avg_logprob=source.robust_logprob_gate)
        assert source.merged is not None
        log.info("loading the merged robust model %s", source.merged)
        return load_transcriber(source.merged, self._settings, min_avg_logprob=source.robust_logprob_gate)

    def _load_members(self) -> list:
        """The robust ensemble's further adapters, merged like the main one; none when the setting is "off"."""
        source = self._robust_source
        assert source is not None
        if not source.ensemble:
            return []
        if self._settings.robust_ensemble == "off":
            log.info("robust_ensemble is off: serving the main robust adapter without its %d ensemble members",
                     len(source.ensemble))
            return []
        log.info("robust ensemble: merging %d more adapters (%s); robust requests are decoded %d times and voted",
                 len(source.ensemble), ", ".join(str(m) for m in source.ensemble), len(source.ensemble) + 1)
        return [load_transcriber(self._path, self._settings, adapter=member,
                                 min_avg_logprob=source.robust_logprob_gate) for member in source.ensemble]

    def _observe_batch(self, size: int, seconds: float) -> None:
        if self.batch_observer is not None:
            self.batch_observer(size)

    def _run_batch(self, items: list[tuple[np.ndarray, TranscriptionOptions]]) -> list[TranscriptionResult]:
        assert self._transcriber is not None
        results: list[TranscriptionResult | None] = [None] * len(items)
        for adapter, transcriber in (("base", self._transcriber), ("robust", self._robust)):
            members = [i for i, (_, o) in enumerate(items) if o.adapter == adapter]
            if not members:
                continue
            assert transcriber is not None, "transcribe() admits robust requests only when loaded"
            audios, opts = [items[i][0] for i in members], [items[i][1] for i in members]
            decoded = transcriber.transcribe(audios, opts)
            if adapter == "robust" and self._members:
                from service.engines.ensemble_pick import ensemble_answer

                votes = [m.transcribe(audios, opts) for m in self._members]
                pick = self._robust_source.ensemble_pick if self._robust_source is not None else "vote"
                everyone = [transcriber, *self._members]
                decoded = [ensemble_answer([own, *others], audio, pick, everyone)
                           for audio, own, *others in zip(audios, decoded, *votes)]
            for i, result in zip(members, decoded):
                result.adapter = adapter
                results[i] = result
        return results  # type: ignore[return-value]

    async def transcribe(self, audios: list[np.ndarray],
                         options: list[TranscriptionOptions]) -> list[TranscriptionResult]:
        if self._batcher is None:
            raise Unavailable("The model is not loaded yet.")
        if self._robust is None and any(o.adapter == "robust" for o in options):
            raise InvalidRequest("No robust model is loaded; start the service with --checkpoint.",
                                 param="router", code="adapter_not_loaded")
        return list(await asyncio.gather(*(self._batcher.submit((a, o)) for a, o in zip(audios, options))))

    def queue_depth(self) -> int:
        return self._batcher.depth() if self._batcher else 0

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
            self._batcher = None
        self._transcriber = None
        self._robust = None
        self._members = []


def robust_probe(gate: float | None, base):
    """The served no-speech gate (:func:`served_no_speech_gate`) as a probe on the loaded base transcriber.

    None: no gate. The probe shares the base path's model (no third copy); both paths run on the one decode thread.
    """
    if gate is None:
        log.info("robust path: no base-model no-speech gate")
        return None
    from service.engines.no_speech_probe import NoSpeechProbe

    log.info("robust path: windows whose base-model no-speech probability is above %.3f are skipped", gate)
    return NoSpeechProbe(base.runner, base.vocab, gate)


def load_transcriber(path: Path, settings: Settings, adapter: Path | None = None,
                     min_avg_logprob: float | None = None):
    """Load model, tokenizer and front end from a HF Whisper folder into a :class:`Transcriber`.

    With ``adapter`` (a peft LoRA folder), the adapter is merged into the weights at load time: the
    robust path then decodes exactly as fast as the base one (no LoRA matmuls per step).
    ``min_avg_logprob`` is the robust path's confidence gate (a bundle's ``robust_logprob_gate``).
    """
    import torch
    from transformers import (
        AutoTokenizer,
        GenerationConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    from service.engines.features import LogMel
    from service.engines.transcriber import GuardConfig, Transcriber, WindowConfig
    from service.engines.vocabulary import load_vocabulary
    from service.engines.whisper_runner import WhisperRunner

    torch.set_num_threads(settings.threads or os.cpu_count() or 1)
    # Checkpoints may be stored in fp16; the CPU needs fp32 (transformers>=5 keeps the file dtype).
    model = WhisperForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, attn_implementation="sdpa").to(settings.device).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().eval()
    if settings.compute_type == "int8":
        # Dynamic int8 (weights int8 per output channel, activations quantised per call) on the
        # encoder and decoder Linears. The vocabulary projection stays fp32: per-tensor int8
        # everywhere lowered the log-probs enough to send short prompts into sampled fallbacks
        # (measured in docs/benchmarks.md); tests/engines/test_engine_options.py checks the WER.
        import warnings

        from torch.ao.quantization import per_channel_dynamic_qconfig

        with warnings.catch_warnings():  # torch.ao's deprecation notices; the API still works in 2.13
            warnings.simplefilter("ignore")
            model.model = torch.ao.quantization.quantize_dynamic(
                model.model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    tokenizer = AutoTokenizer.from_pretrained(path)
    features = WhisperFeatureExtractor.from_pretrained(path)
    try:
        generation = GenerationConfig.from_pretrained(path)
    except OSError:
        generation = model.generation_config
    vocab = load_vocabulary(tokenizer, generation, model.config.vocab_size)
    window = WindowConfig(trim=settings.trim_padding, margin_frames=round(settings.trim_margin_s * 100))
    return Transcriber(WhisperRunner(model), vocab, tokenizer, LogMel(features.mel_filters),
                       max_batch_size=settings.max_batch_size, window=window,
                       guards=GuardConfig(min_avg_logprob=min_avg_logprob))
