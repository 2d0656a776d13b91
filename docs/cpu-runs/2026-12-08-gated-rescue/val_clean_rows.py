"""Round 3's validation clean rows (``val.jsonl``'s clean clips) without the whole `train data` build.

Why: round 24's tuning set (`cpu-runs/2026-12-07-soup/make_val_set.py`) reads only the clean rows of round 3's
``val.jsonl``: the validation voice's sentences and the LibriVox reader. Those come from the plan alone
(`training.data.plan_clean` + `materialise`, the same calls and order `train data` makes; validation clips are
never band-limited), so they need neither the training clips' simulation nor the 16-minute grading pass.

    python docs/cpu-runs/2026-12-08-gated-rescue/val_clean_rows.py training/configs/base.toml runs/r33/val-clean
"""
import json
import sys
from pathlib import Path

from training.config import load_config
from training.data import materialise, plan_clean
from training.sources import ReservedGuard

cfg = load_config(sys.argv[1]).data
out = Path(sys.argv[2])
guard = ReservedGuard.from_files(cfg.reserved_prompts, cfg.asterisk_transcripts)
rows = []
for utt in plan_clean(cfg, guard)["val"]:
    utt, _ = materialise(utt, out)
    rows.append({"id": utt.id, "text": utt.text, "speaker": utt.speaker, "audio": utt.audio_path, "scenario": "clean"})
(out / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
print(f"{len(rows)} clean validation rows -> {out / 'val.jsonl'}")
