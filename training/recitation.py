"""Recitation: degraded clips on which a system says a *training* sentence instead of what was spoken.

Why: the training text is small (a few hundred distinct Asterisk prompt sentences read by TTS voices), and an
adapted decoder can learn to fall back on those sentences when it cannot hear the audio: fluent, confident
and wrong, a hallucination that the n-gram-loop flag does not catch. A hypothesis counts as recited when it
has at least ``min_words`` words, its closest training sentence is at least ``min_similarity`` similar
(rapidfuzz ratio, 0-100, on normalised text) and that similarity beats the similarity to the clip's own
reference by ``margin`` (so an eval prompt that happens to resemble a training prompt is not counted).

    python -m training.recitation --train runs/tiny-r3/data/train.jsonl \\
        --run "round 10 B=runs/tiny-r10b/eval-std" --run "rank 64=runs/gpu2/tiny-en-gpu-r64/eval-std"
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rapidfuzz import fuzz, process

from service.scoring import normalise_english
from training.compare import read_clips
from training.eval import speech_groups

#: Fewer words than this is no attempt at a sentence (and too little to say what it recites).
MIN_WORDS = 4


def training_sentences(manifests: Iterable[str | Path]) -> list[str]:
    """The distinct normalised transcripts of training manifests (rows with an empty text are non-speech)."""
    texts: set[str] = set()
    for manifest in manifests:
        with open(manifest) as handle:
            for line in handle:
                if line.strip() and (text := normalise_english(json.loads(line).get("text") or "")):
                    texts.add(text)
    return sorted(texts)


def is_recited(hypothesis: str, reference: str, sentences: list[str], min_words: int = MIN_WORDS,
               min_similarity: float = 70.0, margin: float = 10.0) -> bool:
    """Whether ``hypothesis`` is nearer a training sentence than the reference (see the module docstring)."""
    hyp = normalise_english(hypothesis)
    if len(hyp.split()) < min_words or not sentences:
        return False
    _, similarity, _ = process.extractOne(hyp, sentences, scorer=fuzz.ratio)
    return similarity >= min_similarity and similarity >= fuzz.ratio(hyp, normalise_english(reference)) + margin


def recitation(clips: list[dict[str, Any]], sentences: list[str], system: str) -> dict[str, Any]:
    """Recited degraded clips of one system, with the number it attempted (>= ``MIN_WORDS`` words)."""
    degraded = speech_groups(clips)["degraded"]
    hyps = [(c[f"{system}_hyp"], c["text"]) for c in degraded]
    attempted = sum(len(normalise_english(h).split()) >= MIN_WORDS for h, _ in hyps)
    recited = sum(is_recited(h, r, sentences) for h, r in hyps)
    return {"system": system, "degraded": len(degraded), "attempted": attempted, "recited": recited,
            "recited_pct": round(100 * recited / max(len(degraded), 1), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", action="append", required=True, help="training manifest (repeatable)")
    parser.add_argument("--run", action="append", required=True, help="name=EVAL_DIR[:system]")
    parser.add_argument("--out", type=Path, help="write recitation.json here")
    args = parser.parse_args(argv)
    sentences = training_sentences(args.train)
    rows = []
    for spec in args.run:
        name, _, rest = spec.partition("=")
        folder, _, system = rest.partition(":")
        clips = read_clips(folder)
        systems = [system] if system else [s for s in ("base", "robust") if f"{s}_hyp" in clips[0]]
        rows += [{"run": name, **recitation(clips, sentences, s)} for s in systems]
    print(f"{len(sentences)} distinct training sentences")
    print(f"| run | system | degraded clips | attempted (>= {MIN_WORDS} words) | recited a training sentence |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['system']} | {r['degraded']} | {r['attempted']} | {r['recited']} ({r['recited_pct']} %) |")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "recitation.json").write_text(json.dumps({"sentences": len(sentences), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
