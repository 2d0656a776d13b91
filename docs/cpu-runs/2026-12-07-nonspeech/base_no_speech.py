"""Would whisper-base's own no-speech head catch the adapter's hallucinations on noise? A diagnostic.

The adapter's no-speech head is untrained, so the robust path cannot tell noise from speech. This prints, for
the noise clips where the routed system wrote words (from an eval's clips.jsonl on the non-speech set) and for
the eval's degraded speech clips (std draw), the first window's no-speech probability from whisper-base (at the
start-of-transcript position, as OpenAI's decoder reads it): how many hallucinations a "base says no speech ->
robust says nothing" rule would remove, and how many degraded speech clips it would silence, with the words the
adapter got right on them lost.
Run from the repository root after the non-speech eval and round 22's std eval:

    python docs/cpu-runs/2026-12-07-nonspeech/base_no_speech.py runs/nonspeech/b5 runs/r22/std-b5
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from service.scoring import score
from training.config import EvalConfig
from training.eval import build_eval_clips, clips_from_manifest
from training.whisper import resolve_model

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("nonspeech_eval", help="eval folder of the non-speech set (clips.jsonl), inside the set's folder "
                    "(its manifest.jsonl one level up, as make_nonspeech_set.py writes it)")
parser.add_argument("std_eval", help="eval folder of the std draw (clips.jsonl with robust hypotheses)")
parser.add_argument("--threshold", type=float, default=0.6, help="OpenAI's no_speech_threshold")
args = parser.parse_args()

model_dir = resolve_model("whisper-base")
processor = WhisperProcessor.from_pretrained(model_dir)
model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
tokenizer = processor.tokenizer
SOT = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
NO_SPEECH = tokenizer.convert_tokens_to_ids("<|nospeech|>")


@torch.no_grad()
def no_speech(audios: list[np.ndarray]) -> list[float]:
    """whisper-base's no-speech probability at the start-of-transcript position of the first 30-s window.

    Computed directly (as OpenAI's decoder does), not read from the transcriber's segments: a window the
    served gate skips leaves no segment to read it from.
    """
    probs = []
    for start in range(0, len(audios), 16):
        batch = [a[:30 * 16000] for a in audios[start:start + 16]]
        features = processor.feature_extractor(batch, sampling_rate=16000, return_tensors="pt").input_features
        sot = torch.full((len(batch), 1), SOT)
        logits = model(input_features=features, decoder_input_ids=sot).logits[:, 0].float()
        probs += logits.softmax(-1)[:, NO_SPEECH].tolist()
    return probs


rows = [json.loads(line) for line in Path(args.nonspeech_eval, "clips.jsonl").read_text().splitlines()]
talked = [r for r in rows if r["routed_hyp"].strip() or r["base_hyp"].strip()]
manifest = {c["id"]: c for c in clips_from_manifest(Path(args.nonspeech_eval).parent / "manifest.jsonl")}
probs = no_speech([manifest[r["id"]]["audio"] for r in talked])
print("noise clips with words | base no-speech p | base hyp | routed hyp")
for r, p in zip(talked, probs):
    print(f"{r['id']} ({r['source']}) | {p:.2f} | {r['base_hyp'][:40]!r} | {r['routed_hyp'][:40]!r}")
caught = sum(p > args.threshold for r, p in zip(talked, probs) if r["routed_hyp"].strip())
print(f"routed hallucinations the rule removes: {caught} of {sum(bool(r['routed_hyp'].strip()) for r in talked)}")

std = {r["id"]: r for r in map(json.loads, Path(args.std_eval, "clips.jsonl").read_text().splitlines())}
eval_cfg = EvalConfig(**json.loads(Path(args.std_eval, "summary.json").read_text())["config"])  # the same draw
clips = [c for c in build_eval_clips(eval_cfg)
         if c["scenario"] not in ("clean", "noise_only", "silent")]
probs = no_speech([c["audio"] for c in clips])
routed = [score(std[c["id"]]["text"], std[c["id"]]["routed_hyp"]) for c in clips]
silenced = [s for s, p in zip(routed, probs) if p > args.threshold]
lost = sum(s.hits for s in silenced)
words = sum(s.reference_words for s in routed)
before = sum(s.word_edits for s in routed)
after = before - sum(s.word_edits for s in silenced) + sum(s.reference_words for s in silenced)  # silenced: all deleted
print(f"degraded speech clips the rule silences: {len(silenced)} of {len(clips)}; "
      f"words the routed system got right on them: {lost} of {words} reference words; "
      f"routed WER on the draw {100 * before / words:.2f} -> {100 * after / words:.2f}")
