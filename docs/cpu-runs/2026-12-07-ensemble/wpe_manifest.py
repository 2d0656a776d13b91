"""Round 31 probe: WPE-dereverberate every clip of a manifest (nara_wpe, single channel); new wavs + manifest.

nara_wpe (MIT) is not a project dependency: pip install --target /tmp/wpe nara_wpe bottleneck click.
Usage: wpe_manifest.py MANIFEST OUT_DIR TAPS DELAY ITERATIONS (round 31: 10 3 3; STFT 512 / 128 at 16 kHz).
"""

import json
import sys
import time
from pathlib import Path

sys.path.append("/tmp/wpe")  # appended: the project's numpy wins over the side directory's
import numpy as np
import soundfile as sf
from nara_wpe.utils import istft, stft
from nara_wpe.wpe import wpe

SIZE, SHIFT = 512, 128


def dereverberate(x: np.ndarray, taps: int, delay: int, iterations: int) -> np.ndarray:
    spec = stft(x[None], size=SIZE, shift=SHIFT).transpose(2, 0, 1)  # frequencies, channels, frames
    out = wpe(spec, taps=taps, delay=delay, iterations=iterations, statistics_mode="full").transpose(1, 2, 0)
    z = istft(out, size=SIZE, shift=SHIFT)[0][: len(x)].astype(np.float32)
    peak = float(np.abs(z).max())
    return z / peak if peak > 1 else z


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    taps, delay, iterations = (int(v) for v in sys.argv[3:6])
    (out / "wav").mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    started = time.time()
    with open(out / "manifest.jsonl", "w") as handle:
        for row in rows:
            x, sr = sf.read(row["audio"], dtype="float32")
            path = out / "wav" / (row["id"].replace("/", "__") + ".wav")
            sf.write(path, dereverberate(x if x.ndim == 1 else x.mean(1), taps, delay, iterations), sr)
            handle.write(json.dumps(dict(row, audio=str(path))) + "\n")
    print(len(rows), "clips", round(time.time() - started, 1), "s")


if __name__ == "__main__":
    main()
