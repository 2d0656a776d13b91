"""Whisper plumbing shared by every stage: loading, features, teacher-forcing targets, decoding.

Targets use Whisper's timestamp format (``<|0.00|> text<|end|>``) because the served transcriber
always decodes with timestamps; training the adapter on the format it is served with keeps the
segmentation logic of the service working on the robust model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from service.config import Settings
from service.engines.base import TranscriptionOptions
from service.engines.decoding import TokenDecoder
from service.engines.features import HOP_LENGTH, SAMPLE_RATE, LogMel, pad_or_trim
from service.engines.whisper_runner import WhisperRunner
from service.models.registry import resolve
from training.device import model_device

IGNORE_INDEX = -100
TIME_PRECISION = 0.02


def resolve_model(name_or_path: str) -> Path:
    """A registry name ("whisper-tiny.en") or a folder → the checkpoint folder."""
    path = Path(name_or_path)
    if path.is_dir() and (path / "config.json").exists():
        return path
    return resolve(name_or_path, home=Settings().home, pull_if_missing=True)


def load_model(name_or_path: str, device: str | torch.device = "cpu"
               ) -> tuple[WhisperForConditionalGeneration, WhisperProcessor, Path]:
    """fp32 model (the stored files are fp16) on ``device``, and its processor."""
    path = resolve_model(name_or_path)
    model = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32).to(device)
    model.config.use_cache = False
    return model, WhisperProcessor.from_pretrained(path), path


@dataclass
class TargetTokens:
    """Special-token ids needed to build targets and rollout prompts.

    ``no_speech`` set (``[sft].no_speech_head``) also trains the start-of-transcript position with its
    meaning in Whisper's own training: ``<|nospeech|>`` on a clip with nothing to say, else the token
    that follows it on speech (the language on a multilingual model, ``<|0.00|>`` on an English-only
    one). Without it an English-only model's first label is ``<|0.00|>`` on every row, non-speech
    included, which drove tiny.en's adapter to a no-speech probability ~0 on everything and killed the
    gate (docs/training.md, round 7); a multilingual model's position is left unlabelled.
    """

    prefix: list[int]  # <|startoftranscript|> [<|en|><|transcribe|>]
    eot: int
    timestamp_begin: int
    no_timestamps: int
    no_speech: int | None = None

    @classmethod
    def from_processor(cls, processor: WhisperProcessor, model_config, no_speech_head: bool = False) -> TargetTokens:
        tok = processor.tokenizer
        sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
        prefix = [sot]
        if getattr(model_config, "vocab_size", 51864) >= 51865:  # multilingual vocabulary
            prefix += [tok.convert_tokens_to_ids("<|en|>"), tok.convert_tokens_to_ids("<|transcribe|>")]
        no_ts = tok.convert_tokens_to_ids("<|notimestamps|>")
        no_speech = None
        if no_speech_head:
            names = [n for n in ("<|nospeech|>", "<|nocaptions|>") if n in tok.get_vocab()]
            if not names:
                raise ValueError("this tokenizer has no <|nospeech|> (or <|nocaptions|>) token to train")
            no_speech = tok.convert_tokens_to_ids(names[0])
        return cls(prefix, tok.convert_tokens_to_ids("<|endoftext|>"), no_ts + 1, no_ts, no_speech)

    def timestamp(self, seconds: float, max_seconds: float = 30.0) -> int:
        return self.timestamp_begin + round(min(max(seconds, 0.0), max_seconds) / TIME_PRECISION)

    def rollout_prompt(self) -> list[int]:
        """Decoder prompt for sampling: the prefix and a first ``<|0.00|>``."""
        return [*self.prefix, self.timestamp_begin]


def target_ids(processor: WhisperProcessor, tokens: TargetTokens, text: str, end_seconds: float) -> list[int]:
    """Full decoder sequence: prefix, <|0.00|>, text tokens, <|end|>, <|endoftext|> (empty text: prefix, <|0.00|>, <|endoftext|>)."""
    body = processor.tokenizer.encode(" " + text.strip(), add_special_tokens=False) if text.strip() else []
    if not body:  # no speech: the served timestamp decode of "nothing said" (<|0.00|> then end of text)
        return [*tokens.prefix, tokens.timestamp_begin, tokens.eot]
    return [*tokens.prefix, tokens.timestamp_begin, *body, tokens.timestamp(end_seconds), tokens.eot]


class FeatureMaker:
    """Audio → the fixed-size log-mel window the encoder expects (the service's own front end)."""

    def __init__(self, processor: WhisperProcessor, model_config) -> None:
        self.log_mel = LogMel(processor.feature_extractor.mel_filters)
        self.frames = 2 * int(model_config.max_source_positions)

    def __call__(self, audios: list[np.ndarray]) -> torch.Tensor:
        """[B, n_mels, frames]: exactly the served path (global log-mel, content frames, zero pad)."""
        mels = []
        for audio in audios:
            audio = np.asarray(audio, dtype=np.float32)[: self.frames * HOP_LENGTH]
            mel = self.log_mel(audio)
            content = len(audio) // HOP_LENGTH
            mels.append(pad_or_trim(mel[:, :content], self.frames))
        return torch.stack(mels)


@dataclass
class Batch:
    input_features: torch.Tensor
    decoder_input_ids: torch.Tensor
    labels: torch.Tensor


def decoder_targets(texts: list[str], ends: list[float], processor: WhisperProcessor,
                    tokens: TargetTokens) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing inputs and labels: loss on everything after the task prefix (timestamps, text, EOT).

    With ``tokens.no_speech`` the start-of-transcript position is labelled too (see :class:`TargetTokens`).
    """
    seqs = [target_ids(processor, tokens, t, e) for t, e in zip(texts, ends)]
    width = max(len(s) for s in seqs) - 1
    inputs = torch.full((len(seqs), width), tokens.eot, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    n_prefix = len(tokens.prefix)
    for i, (seq, text) in enumerate(zip(seqs, texts)):
        inputs[i, : len(seq) - 1] = torch.tensor(seq[:-1])
        labels[i, n_prefix - 1: len(seq) - 1] = torch.tensor(seq[n_prefix:])
        if tokens.no_speech is not None:
            labels[i, 0] = tokens.no_speech if not text.strip() else seq[1]
    return inputs, labels


def make_batch(audios: list[np.ndarray], texts: list[str], ends: list[float], processor: WhisperProcessor,
               tokens: TargetTokens, features: FeatureMaker) -> Batch:
    """Features plus :func:`decoder_targets` (the plain full-model path)."""
    inputs, labels = decoder_targets(texts, ends, processor, tokens)
    return Batch(features(audios), inputs, labels)


def sequence_loss(model, batch: Batch) -> torch.Tensor:
    """Mean token cross-entropy over the unmasked targets (the batch follows the model's device)."""
    device = model_device(model)
    out = model(input_features=batch.input_features.to(device),
                decoder_input_ids=batch.decoder_input_ids.to(device))
    logits = out.logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                             batch.labels.reshape(-1).to(device), ignore_index=IGNORE_INDEX)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The Whisper model inside a peft wrapper (its LoRA layers stay active), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class Decoder:
    """Greedy (served-path) transcription of arrays with any in-memory Whisper model.

    Builds the service's :class:`Transcriber` once from a checkpoint folder, then points its
    runner at whichever model is being evaluated (peft-wrapped, merged or base). ``device`` is the
    service's own ``Settings.device``: the transcriber's model is loaded there and its runner moves
    inputs to the weights' device, so a model given to :meth:`use_model` must be on it too.
    """

    def __init__(self, checkpoint: Path, threads: int = 2, batch_size: int = 16,
                 temperatures: tuple[float, ...] = (0.0,), max_new_tokens: int = 128,
                 device: str | torch.device = "cpu", beam_size: int = 1, best_of: int = 1) -> None:
        from service.engines.embedded import load_transcriber

        settings = Settings(threads=threads, max_batch_size=batch_size, device=str(device))
        self.transcriber = load_transcriber(Path(checkpoint), settings)
        self.batch_size = batch_size
        self.options = TranscriptionOptions(language="en", temperatures=temperatures, seed=0,
                                            max_new_tokens=max_new_tokens, beam_size=beam_size,
                                            best_of=best_of)

    def use_model(self, model: torch.nn.Module) -> Decoder:
        runner = WhisperRunner(unwrap(model))
        self.transcriber.runner = runner
        self.transcriber.decoder = TokenDecoder(runner, self.transcriber.vocab)
        return self

    @property
    def model(self) -> torch.nn.Module:
        return self.transcriber.runner.model

    def __call__(self, audios: list[np.ndarray]) -> list[str]:
        was_training = self.model.training
        self.model.eval()
        try:
            texts: list[str] = []
            for start in range(0, len(audios), self.batch_size):
                chunk = audios[start:start + self.batch_size]
                results = self.transcriber.transcribe(chunk, [self.options] * len(chunk))
                texts += [r.text.strip() for r in results]
            return texts
        finally:
            self.model.train(was_training)


def audio_seconds(audio: np.ndarray) -> float:
    return len(audio) / SAMPLE_RATE


WEIGHT_FILES = {"model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"}


def save_full_checkpoint(model: torch.nn.Module, base_dir: Path, out_dir: Path) -> Path:
    """A complete HF Whisper folder: fp32 weights (LoRA deltas survive) + the base's other files."""
    import shutil

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    for item in Path(base_dir).iterdir():
        if item.is_file() and item.name not in WEIGHT_FILES and item.name != "config.json" \
                and not (out_dir / item.name).exists():
            shutil.copy2(item, out_dir / item.name)
    return out_dir
