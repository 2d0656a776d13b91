"""What a robust ensemble costs: the main adapter alone against the main adapter + members + ROVER vote.

Why: an ensemble bundle (``ensemble`` in bundle.json; docs/training.md, round 31) decodes every robust request
once per adapter and votes the transcripts (``service.engines.rover``); the accuracy it buys is measured by
``megaasr eval``, the CPU time it costs here. Speech clips (``benchmarks/speech.py``) are decoded as the embedded
engine decodes them (one batch of ``--batch`` requests, the bundle's no-speech gate on every adapter), alone and
as the ensemble, alternating, ``--repeats`` times; the ratio of the medians is printed and written to
``benchmarks/results/robust_ensemble[_beamN].{json,md}``. A third timing is what ``ensemble_pick = "likelihood"``
adds where the members disagree (round 32): every adapter scores three candidates of each clip (its transcript,
the same words reversed, the first half), teacher-forced, as the engine scores them. On these clean clips the
members agree, so the engine itself would score nothing: this is the pick's worst case. Run from the
repository root:

    python -m benchmarks.robust_ensemble [--beam-size 5] [--repeats 3]
"""

from __future__ import annotations

import statistics
import time

from benchmarks.no_speech_gate import robust_path_parser, save_results, timed
from benchmarks.speech import clips
from service.config import Settings
from service.engines.base import TranscriptionOptions
from service.engines.candidate_scores import window_scores
from service.engines.embedded import load_transcriber, robust_probe
from service.engines.rover import ensemble_result
from service.models.bundle import load_bundle
from service.models.registry import resolve


def main(argv: list[str] | None = None) -> int:
    parser = robust_path_parser(__doc__, "clips, decoded as one batch")
    args = parser.parse_args(argv)

    bundle = load_bundle(args.checkpoint)
    if not bundle.ensemble or bundle.adapter is None:
        parser.error(f"{args.checkpoint} has no robust ensemble: nothing to compare")
    settings = Settings(threads=args.threads, max_batch_size=args.batch)
    base_dir = resolve(bundle.base_model, settings.home)
    probe = robust_probe(bundle.robust_no_speech_gate, load_transcriber(base_dir, settings))
    adapters = [load_transcriber(base_dir, settings, adapter=a) for a in (bundle.adapter, *bundle.ensemble)]
    for transcriber in adapters:
        transcriber.probe = probe
    options = TranscriptionOptions(language="en", beam_size=args.beam_size)
    audios = [c.audio for c in clips(args.seconds, args.batch)]
    timed(adapters[0], audios[:2], options)  # warm-up: first-call allocations

    def ensemble() -> tuple[float, list]:
        started = time.perf_counter()
        answers = [t.transcribe(audios, [options] * len(audios)) for t in adapters]
        voted = [ensemble_result(list(per_clip)) for per_clip in zip(*answers)]
        return time.perf_counter() - started, voted

    def likelihood_scoring(transcripts: list[str]) -> float:
        started = time.perf_counter()
        for audio, text in zip(audios, transcripts):
            words = text.split()
            candidates = [text, " ".join(reversed(words)), " ".join(words[:len(words) // 2])]
            for t in adapters:
                window_scores(t.runner.model, t.log_mel, t.vocab, t.tokenizer, audio, candidates)
        return time.perf_counter() - started

    seconds: dict[str, list[float]] = {"alone": [], "ensemble": [], "scoring": []}
    texts: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        elapsed, results = timed(adapters[0], audios, options)
        seconds["alone"].append(elapsed)
        texts["alone"] = [r.text for r in results]
        elapsed, results = ensemble()
        seconds["ensemble"].append(elapsed)
        texts["ensemble"] = [r.text for r in results]
        seconds["scoring"].append(likelihood_scoring(texts["ensemble"]))
    alone, voted = statistics.median(seconds["alone"]), statistics.median(seconds["ensemble"])
    scoring = statistics.median(seconds["scoring"])
    changed = sum(a.split() != b.split() for a, b in zip(texts["alone"], texts["ensemble"]))
    row = {"clips": len(audios), "audio_s": round(len(audios) * args.seconds, 1), "adapters": len(adapters),
           "alone_s": round(alone, 3), "ensemble_s": round(voted, 3), "ratio": round(voted / alone, 3),
           "clips_changed_by_the_vote": changed, "likelihood_scoring_s": round(scoring, 3),
           "ratio_with_likelihood_pick": round((voted + scoring) / alone, 3)}
    table = ("| audio | adapters | main adapter alone (s) | ensemble + vote (s) | ensemble / alone | clips the vote changed "
             "| + likelihood scoring, every clip (s) | (ensemble + scoring) / alone |\n"
             "|---|---|---|---|---|---|---|---|\n"
             f"| {len(audios)} x {args.seconds:g} s speech | {len(adapters)} | {row['alone_s']} | {row['ensemble_s']} | "
             f"**{row['ratio']}** | {changed} | {row['likelihood_scoring_s']} | **{row['ratio_with_likelihood_pick']}** |\n")
    save_results("robust_ensemble", args, bundle.robust_no_speech_gate, {"row": row},
                 f"Robust path: the main adapter alone against the {len(adapters)}-adapter ensemble with its ROVER vote",
                 table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
