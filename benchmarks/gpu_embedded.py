"""The embedded engine on a CUDA GPU beside the same engine on the same machine's CPU, in one run.

    python -m benchmarks.gpu_embedded --model DIR --audio DIR_OF_LIBRIVOX_WAVS --out result.json

Checks that ``--device cuda`` decodes the same text as the CPU (the decoding rules run on the CPU
either way; only the network runs on the GPU), and measures single-request real-time factor on
30 s and 5 min of real speech and batch throughput (16 requests of 30 s through one
``Transcriber.transcribe`` call, as the micro-batcher would hand them over). Written for the lent
GPU machine, where only torch and transformers are installed and weights must be carried in.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from service.config import Settings
from service.engines.base import TranscriptionOptions
from service.engines.embedded import load_transcriber
from service.scoring import corpus_score

RATE = 16_000


def _speech(audio_dir: Path) -> tuple[list[np.ndarray], list[str]]:
    """The LibriVox utterances and references (pocketsphinx-testdata's ``transcription`` file)."""
    from simulation.manifests import from_librivox

    clips, texts = [], []
    for row in sorted(from_librivox(audio_dir), key=lambda r: r["id"]):
        x, sr = sf.read(row["path"], dtype="float32", always_2d=True)
        clips.append(soxr.resample(x.mean(axis=1), sr, RATE).astype(np.float32))
        texts.append(row["text"])
    return clips, texts


def _join(clips: list[np.ndarray], texts: list[str], seconds: float) -> tuple[np.ndarray, str]:
    """Utterances with 0.5 s pauses, repeated until ``seconds`` long (whole utterances only)."""
    pause = np.zeros(RATE // 2, dtype=np.float32)
    parts, words, total, i = [], [], 0.0, 0
    while total < seconds:
        parts += [clips[i % len(clips)], pause]
        words.append(texts[i % len(texts)])
        total += (len(clips[i % len(clips)]) + len(pause)) / RATE
        i += 1
    return np.concatenate(parts), " ".join(words)


def _timed(transcriber, audios: list[np.ndarray], reps: int) -> tuple[float, list[str]]:
    options = [TranscriptionOptions(language="en", seed=0)] * len(audios)
    times, texts = [], []
    for _ in range(reps):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        results = transcriber.transcribe(audios, options)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        texts = [r.text for r in results]
    return statistics.median(times), texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    clips, texts = _speech(args.audio)
    half_minute, half_ref = _join(clips, texts, 30)
    five_minutes, five_ref = _join(clips, texts, 300)
    cases = {"30s": ([half_minute], [half_ref]), "5min": ([five_minutes], [five_ref]),
             f"batch{args.batch}x30s": ([half_minute] * args.batch, [half_ref] * args.batch)}
    report: dict = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                                "cpu_threads": torch.get_num_threads()},
                    "model": args.model.name, "results": {}}
    outputs: dict[str, dict[str, list[str]]] = {}
    for device in args.devices.split(","):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise SystemExit("CUDA requested but torch sees no GPU")
        settings = Settings(device=device, max_batch_size=args.batch)
        started = time.perf_counter()
        transcriber = load_transcriber(args.model, settings)
        load_s = time.perf_counter() - started
        _timed(transcriber, [clips[0]], 1)  # warm-up (CUDA context, kernels, caches)
        rows = {"load_s": round(load_s, 2)}
        outputs[device] = {}
        for name, (audios, refs) in cases.items():
            reps = 1 if name == "5min" and device == "cpu" else args.reps
            seconds, hyps = _timed(transcriber, audios, reps)
            audio_s = sum(len(a) for a in audios) / RATE
            rows[name] = {"wall_s": round(seconds, 3), "audio_s": round(audio_s, 1),
                          "rtf": round(seconds / audio_s, 5), "audio_s_per_s": round(audio_s / seconds, 1),
                          "wer": round(100 * corpus_score(list(zip(refs, hyps))).wer, 2), "reps": reps}
            outputs[device][name] = hyps
            print(device, name, rows[name], flush=True)
        report["results"][device] = rows
        del transcriber
    if len(outputs) == 2:
        a, b = outputs.values()
        report["same_text_cpu_gpu"] = {name: a[name] == b[name] for name in a}
        base, other = args.devices.split(",")
        report["speedup_gpu_over_cpu"] = {
            name: round(report["results"][base][name]["wall_s"] / report["results"][other][name]["wall_s"], 1)
            for name in cases}
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in report if k != "results"}, indent=2))


if __name__ == "__main__":
    main()
