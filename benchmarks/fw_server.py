"""A minimal faster-whisper HTTP server: the baseline our service is measured against.

Why: throughput under concurrent clients is a property of a server, so faster-whisper gets the
simplest server one would write around it: one ``WhisperModel`` loaded once, an OpenAI-shaped
``POST /v1/audio/transcriptions`` (multipart ``file``) answered from FastAPI's thread pool, and the
same decoding options as ours (greedy, OpenAI's temperature fallback, no previous-text
conditioning, no VAD filter). CTranslate2 runs concurrent calls on its ``num_workers`` model
replicas (1 here, as in faster-whisper's default) with ``cpu_threads`` intra-op threads each.

    python -m benchmarks.fw_server --model-dir ~/.cache/megaasr/ct2/whisper-tiny.en --port 8100
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr
import uvicorn
from fastapi import FastAPI, File, Form, UploadFile

TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class Decoding:
    """The decode both systems run: beam width at temperature 0 and samples per fallback temperature.

    1 / 1 is both engines' default (greedy, one sample); 5 / 5 is faster-whisper's and OpenAI's CLI default.
    """

    beam_size: int = 1
    best_of: int = 1

    def flags(self) -> list[str]:
        """The same settings as command-line flags (``megaasr serve`` and this server take the same ones)."""
        return ["--beam-size", str(self.beam_size), "--best-of", str(self.best_of)]

    def describe(self) -> str:
        beam = "greedy" if self.beam_size == 1 else f"beam search of width {self.beam_size}"
        return f"{beam}, temperatures 0.0-1.0 fallback with best_of {self.best_of}"


GREEDY = Decoding()


def transcribe_options(language: str | None, decoding: Decoding = GREEDY) -> dict:
    """faster-whisper keyword arguments that match our engine's defaults (shared with in-process runs)."""
    return {"language": language, "beam_size": decoding.beam_size, "best_of": decoding.best_of,
            "temperature": list(TEMPERATURES),
            "condition_on_previous_text": False, "vad_filter": False, "without_timestamps": False,
            "compression_ratio_threshold": 2.4, "log_prob_threshold": -1.0, "no_speech_threshold": 0.6}


def build_app(model_dir: str, threads: int, compute_type: str, workers: int = 1,
              decoding: Decoding = GREEDY) -> FastAPI:
    """The app with its model loaded (load time is not part of any measurement)."""
    from faster_whisper import WhisperModel

    model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=threads,
                         num_workers=workers)
    app = FastAPI(title="faster-whisper baseline")

    @app.get("/ready")
    def ready() -> dict:
        return {"status": "ready"}

    @app.post("/v1/audio/transcriptions")
    def transcriptions(file: UploadFile = File(...), language: str | None = Form(None),
                       model_name: str | None = Form(None, alias="model")) -> dict:
        audio, sr = sf.read(io.BytesIO(file.file.read()), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if sr != 16000:
            audio = soxr.resample(audio, sr, 16000).astype(np.float32)
        segments, _ = model.transcribe(audio, **transcribe_options(language, decoding))
        return {"text": "".join(s.text for s in segments).strip()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="CTranslate2 Whisper folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 cpu_threads")
    parser.add_argument("--compute-type", default="float32", choices=("float32", "int8"))
    parser.add_argument("--workers", type=int, default=1, help="CTranslate2 num_workers")
    parser.add_argument("--beam-size", type=int, default=1, help="beam width at temperature 0")
    parser.add_argument("--best-of", type=int, default=1, help="samples per fallback temperature")
    args = parser.parse_args()
    app = build_app(args.model_dir, args.threads, args.compute_type, args.workers,
                    Decoding(args.beam_size, args.best_of))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
