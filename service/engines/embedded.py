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
from service.engines.base import Engine, ModelInfo, TranscriptionOptions, TranscriptionResult
from service.errors import Unavailable

log = logging.getLogger(__name__)


class EmbeddedEngine(Engine):
    def __init__(self, model_path: Path, model_id: str, settings: Settings) -> None:
        self._path = Path(model_path)
        self._id = model_id
        self._settings = settings
        self._transcriber = None
        self._batcher = None
        self._multilingual = False
        self.load_seconds: float | None = None

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(id=self._id, path=str(self._path), multilingual=self._multilingual)

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
        self.load_seconds = time.monotonic() - started
        self._multilingual = self._transcriber.vocab.multilingual
        self._batcher = MicroBatcher(
            self._run_batch, max_batch=self._settings.max_batch_size,
            max_wait_ms=self._settings.batch_wait_ms, max_queue=self._settings.max_queue,
            retry_after_s=self._settings.retry_after_s)
        self._batcher.start()
        log.info("loaded %s from %s in %.1f s", self._id, self._path, self.load_seconds)

    def _load(self):
        return load_transcriber(self._path, self._settings)

    def _run_batch(self, items: list[tuple[np.ndarray, TranscriptionOptions]]) -> list[TranscriptionResult]:
        assert self._transcriber is not None
        return self._transcriber.transcribe([a for a, _ in items], [o for _, o in items])

    async def transcribe(self, audios: list[np.ndarray],
                         options: list[TranscriptionOptions]) -> list[TranscriptionResult]:
        if self._batcher is None:
            raise Unavailable("The model is not loaded yet.")
        return list(await asyncio.gather(*(self._batcher.submit((a, o)) for a, o in zip(audios, options))))

    def queue_depth(self) -> int:
        return self._batcher.depth() if self._batcher else 0

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
            self._batcher = None
        self._transcriber = None


def load_transcriber(path: Path, settings: Settings):
    """Load model, tokenizer and front end from a HF Whisper folder into a :class:`Transcriber`."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, WhisperFeatureExtractor, \
        WhisperForConditionalGeneration

    from service.engines.features import LogMel
    from service.engines.transcriber import Transcriber
    from service.engines.vocabulary import load_vocabulary
    from service.engines.whisper_runner import WhisperRunner

    torch.set_num_threads(settings.threads or os.cpu_count() or 1)
    # Checkpoints may be stored in fp16; the CPU needs fp32 (transformers>=5 keeps the file dtype).
    model = WhisperForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, attn_implementation="sdpa").to(settings.device).eval()
    if settings.compute_type == "int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    tokenizer = AutoTokenizer.from_pretrained(path)
    features = WhisperFeatureExtractor.from_pretrained(path)
    try:
        generation = GenerationConfig.from_pretrained(path)
    except OSError:
        generation = model.generation_config
    vocab = load_vocabulary(tokenizer, generation, model.config.vocab_size)
    return Transcriber(WhisperRunner(model), vocab, tokenizer, LogMel(features.mel_filters),
                       max_batch_size=settings.max_batch_size)
