"""Small fixtures for the training tests: a tiny random Whisper and a few spoken clips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

from training.data import read_manifest
from training.sources import read_audio, speech_end_seconds, synthesise

SENTENCES = ["Please hold.", "Goodbye.", "Thank you for calling.", "The party is busy."]
#: A manifest whose clean flite rows stand in for flite where it is not installed: the GPU machine, where
#: scripts/device_train.sh points this at the recipe's freshly built training manifest.
RECORDED_SPEECH_ENV = "MEGAASR_TEST_SPEECH"


def tiny_whisper(folder: Path, processor_source: Path, seed: int = 0) -> Path:
    """A 2+2-layer, d=64 Whisper with a 1-second window, saved with the real tokenizer files."""
    torch.manual_seed(seed)
    processor = WhisperProcessor.from_pretrained(processor_source)
    config = WhisperConfig(vocab_size=len(processor.tokenizer), d_model=64, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
                           decoder_ffn_dim=128, max_source_positions=50, max_target_positions=64,
                           num_mel_bins=80, dropout=0.0, pad_token_id=50256, bos_token_id=50256,
                           eos_token_id=50256, decoder_start_token_id=50257)
    model = WhisperForConditionalGeneration(config)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _recorded(voice: str) -> list[tuple[str, Path]]:
    """The shortest clean wideband rows of ``voice`` in the $MEGAASR_TEST_SPEECH manifest, as (text, wav)."""
    rows = [r for r in read_manifest(os.environ[RECORDED_SPEECH_ENV]) if r["scenario"] == "clean" and r["speaker"] == f"flite-{voice}" and "@8k" not in r["id"]]
    if len(rows) < len(SENTENCES):
        raise ValueError(f"{os.environ[RECORDED_SPEECH_ENV]}: fewer than {len(SENTENCES)} clean rows of flite-{voice}")
    return [(r["text"], Path(r["audio"])) for r in sorted(rows, key=lambda r: (len(r["text"]), r["id"]))[:len(SENTENCES)]]


def spoken_rows(folder: Path, voices: tuple[str, ...] = ("slt",)) -> list[dict]:
    """Manifest rows of short flite clips (treated as degraded, base WER 0.2); from $MEGAASR_TEST_SPEECH if set."""
    rows = []
    for voice in voices:
        if os.environ.get(RECORDED_SPEECH_ENV):
            spoken = _recorded(voice)
        else:
            spoken = [(text, synthesise(text, voice, folder / f"{voice}-{i}.wav")) for i, text in enumerate(SENTENCES)]
        for i, (text, path) in enumerate(spoken):
            audio = read_audio(path)
            rows.append({"id": f"{voice}-{i}", "audio": str(path), "text": text, "speaker": voice,
                         "scenario": "noise", "split": "train", "speech_end": min(0.9, speech_end_seconds(audio)),
                         "base_wer": 0.2, "base_hyp": ""})
    return rows


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_workspace(root: Path) -> tuple[Path, Path, list[dict]]:
    """A tiny Whisper plus a data folder whose train and val splits are the same spoken clips."""
    from tests.conftest import model_dir

    model_path = tiny_whisper(root / "model", model_dir("whisper-tiny.en"))
    rows = spoken_rows(root / "audio")
    data = root / "data"
    data.mkdir()
    write_jsonl(rows, data / "train.jsonl")
    write_jsonl(rows, data / "val.jsonl")
    return root, model_path, rows
