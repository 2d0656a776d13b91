"""What the robust path's no-speech gate costs: the robust model with and without it, side by side.

Why: ``robust_no_speech_gate`` (``service/engines/no_speech_probe.py``) adds one base-model encoder pass and
one decoder step to every robust window, and saves the decode of every window it skips. Which one wins
depends on the audio, so both kinds are timed: real speech (the benchmark clips of ``benchmarks/speech.py``)
and real noise (Debian's sonic-pi samples, no speech at all). Each set is decoded by the shipped whisper-base
bundle's robust model as the embedded engine decodes it (one batch of ``--batch`` requests), with the gate
and without, alternating, ``--repeats`` times; the ratio of the medians is printed and written to
``benchmarks/results/no_speech_gate.{json,md}``. Run from the repository root:

    python -m benchmarks.no_speech_gate [--beam-size 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.speech import SAMPLE_RATE, _read16k, clips
from service.config import Settings
from service.engines.base import TranscriptionOptions
from service.engines.embedded import load_transcriber, robust_probe
from service.models.bundle import load_bundle
from service.models.registry import resolve

RESULTS = Path(__file__).resolve().parent / "results"
NOISES = ("ambi_drone", "vinyl_hiss", "loop_industrial", "loop_3d_printer", "ambi_lunar_land", "bass_hit_c",
          "loop_amen", "perc_bell", "ambi_glass_hum", "guit_em9", "elec_blip", "misc_crow", "loop_garzul",
          "ambi_haunted_hum", "drum_cymbal_open", "bd_haus")
SONIC_PI = Path("/usr/share/sonic-pi/samples")


def noise_clips(seconds: float, count: int) -> list[np.ndarray]:
    """The first ``seconds`` of ``count`` sonic-pi samples (looped when shorter), at -20 dBFS peak."""
    out = []
    for name in NOISES[:count]:
        audio = _read16k(SONIC_PI / f"{name}.flac")
        audio = np.resize(audio, int(seconds * SAMPLE_RATE)).astype(np.float32)
        out.append(audio * (0.1 / max(float(np.abs(audio).max()), 1e-6)))
    return out


def timed(transcriber, audios: list[np.ndarray], options: TranscriptionOptions) -> tuple[float, list]:
    started = time.perf_counter()
    results = transcriber.transcribe(audios, [options] * len(audios))
    return time.perf_counter() - started, results


def robust_path_parser(doc: str, batch_help: str) -> argparse.ArgumentParser:
    """The flags of the robust-path A/B benchmarks, the ones :func:`save_results` records among them."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/whisper-base-robust")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=8, help=batch_help)
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def save_results(stem: str, args: argparse.Namespace, gate: float | None, data: dict, title: str, table: str) -> None:
    """Write ``results/<stem>[_beamN].{json,md}`` with the run's settings and machine, and print the table."""
    meta = {"checkpoint": args.checkpoint, "gate": gate, "beam_size": args.beam_size, "threads": args.threads,
            "repeats": args.repeats, "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    suffix = "" if args.beam_size == 1 else f"_beam{args.beam_size}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}{suffix}.json").write_text(json.dumps({"meta": meta, **data}, indent=2))
    (RESULTS / f"{stem}{suffix}.md").write_text(
        f"{title}, {meta['when']}, beam {args.beam_size}, {args.threads} threads, median of {args.repeats}\n\n{table}")
    print(table)


def main(argv: list[str] | None = None) -> int:
    parser = robust_path_parser(__doc__, "clips per set, decoded as one batch")
    args = parser.parse_args(argv)

    bundle = load_bundle(args.checkpoint)
    if bundle.robust_no_speech_gate is None or bundle.adapter is None:
        parser.error(f"{args.checkpoint} has no robust_no_speech_gate or no adapter: nothing to compare")
    settings = Settings(threads=args.threads, max_batch_size=args.batch)
    base_dir = resolve(bundle.base_model, settings.home)
    base = load_transcriber(base_dir, settings)
    robust = load_transcriber(base_dir, settings, adapter=bundle.adapter)
    probe = robust_probe(bundle.robust_no_speech_gate, base)
    options = TranscriptionOptions(language="en", beam_size=args.beam_size)
    sets = {"speech": [c.audio for c in clips(args.seconds, args.batch)],
            "noise": noise_clips(args.seconds, args.batch)}
    timed(robust, sets["speech"][:2], options)  # warm-up: first-call allocations
    rows = []
    for name, audios in sets.items():
        seconds: dict[str, list[float]] = {"off": [], "on": []}
        words = {}
        skipped = 0
        for _ in range(args.repeats):
            for mode in ("off", "on"):
                robust.probe = probe if mode == "on" else None
                elapsed, results = timed(robust, audios, options)
                seconds[mode].append(elapsed)
                words[mode] = sum(len(r.text.split()) for r in results)
                if mode == "on":
                    skipped = sum(r.extras["no_speech_gated_windows"] for r in results)
        off, on = statistics.median(seconds["off"]), statistics.median(seconds["on"])
        rows.append({"set": name, "clips": len(audios), "audio_s": round(len(audios) * args.seconds, 1),
                     "without_gate_s": round(off, 3), "with_gate_s": round(on, 3), "ratio": round(on / off, 3),
                     "windows_skipped": skipped, "words_without": words["off"], "words_with": words["on"]})
    robust.probe = None
    table = ("| audio | clips | without gate (s) | with gate (s) | with / without | windows skipped | words without -> with |\n"
             "|---|---|---|---|---|---|---|\n")
    for r in rows:
        table += (f"| {r['set']} | {r['clips']} x {args.seconds:g} s | {r['without_gate_s']} | {r['with_gate_s']} | "
                  f"**{r['ratio']}** | {r['windows_skipped']} | {r['words_without']} -> {r['words_with']} |\n")
    save_results("no_speech_gate", args, bundle.robust_no_speech_gate, {"rows": rows},
                 f"Robust path with and without the no-speech gate ({bundle.robust_no_speech_gate})", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
