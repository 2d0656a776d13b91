"""Listening and looking: one file per scenario plus an HTML page with spectrograms and players.

Why: parameter tables do not tell whether an effect sounds like its real-world counterpart. The
page puts the clean input and all chosen scenarios side by side at one severity, each with a
spectrogram (PNG) and an audio player, and the parameters that were used.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf

from simulation.noise_bank import NoiseSource
from simulation.scenarios import resolve_scenarios
from simulation.simulate import simulate


def save_spectrogram(audio: np.ndarray, sr: int, path: Path, title: str) -> None:
    """Log-magnitude spectrogram, 0 to Nyquist, -100..0 dBFS colour range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=80)
    with np.errstate(divide="ignore"):  # silent frames are -inf dB, drawn as the floor colour
        ax.specgram(audio, NFFT=512, Fs=sr, noverlap=384, cmap="magma", vmin=-100, vmax=0, scale="dB")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("s", fontsize=8)
    ax.set_ylabel("Hz", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _summary(steps: list[dict]) -> str:
    parts = []
    for s in steps:
        params = {k: v for k, v in s["params"].items() if k not in ("wet", "source") or v not in (1.0, "bank")}
        parts.append(f"{s['effect']}.{s['primitive']}({', '.join(f'{k}={v}' for k, v in params.items())})")
    return " → ".join(parts)


def make_demo(
    input_path: str | Path,
    out_dir: str | Path,
    scenarios: str | Iterable[str] = "all",
    severity: float = 0.5,
    seed: int = 0,
    noise_bank: NoiseSource | str | None = None,
    reverb_engine: str = "freeverb",
) -> Path:
    """Write ``<scenario>.wav``/``.png`` for each scenario and ``index.html``; returns the page's path."""
    data, sr = sf.read(input_path, dtype="float32", always_2d=True)
    audio = data.mean(axis=1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = resolve_scenarios(scenarios)
    sf.write(out / "clean.wav", audio, sr)
    save_spectrogram(audio, sr, out / "clean.png", "clean input")
    rows = [("clean", "clean", "", "clean.wav", "clean.png")]
    records = {}
    for name in names:
        result = simulate(audio, sr, name, severity, seed, noise_bank, reverb_engine=reverb_engine)
        sf.write(out / f"{name}.wav", result.audio, sr)
        save_spectrogram(result.audio, sr, out / f"{name}.png", f"{name} (m={severity})")
        records[name] = result.record()
        rows.append((name, result.public_name, _summary(result.steps), f"{name}.wav", f"{name}.png"))
    (out / "records.json").write_text(json.dumps(records, indent=1) + "\n")
    body = "\n".join(
        f"<tr><td><b>{html.escape(n)}</b><br><small>{html.escape(p)}</small></td>"
        f"<td><img src='{html.escape(img)}' loading='lazy'><br><audio controls preload='none' "
        f"src='{html.escape(wav)}'></audio><br><small>{html.escape(desc)}</small></td></tr>"
        for n, p, desc, wav, img in rows
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Mega-ASR simulation demo</title>
<style>body{{font-family:sans-serif;margin:1em}} td{{vertical-align:top;padding:6px;border-bottom:1px solid #ddd}}
small{{color:#555}} img{{max-width:640px}}</style></head><body>
<h1>Acoustic simulation demo</h1>
<p>Input: {html.escape(str(input_path))} ({len(audio) / sr:.2f} s, {sr} Hz). Severity m = {severity}, seed = {seed},
reverb engine = {html.escape(reverb_engine)}. {len(names)} scenario(s). Parameters of every step: records.json.</p>
<table>{body}</table></body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
