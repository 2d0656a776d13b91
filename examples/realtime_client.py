"""Stream a WAV file to /v1/realtime at real-time pace and print live and final transcripts.

    python examples/realtime_client.py speech.wav --url ws://127.0.0.1:8000/v1/realtime

Needs ``websockets`` (pip install websockets) and soundfile/soxr (installed with mega-asr).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json

import numpy as np
import soundfile as sf
import soxr
import websockets

RATE = 24_000  # OpenAI realtime pcm16 rate


async def stream(path: str, url: str, api_key: str | None, speed: float) -> None:
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = soxr.resample(audio.mean(axis=1), sr, RATE)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    # Trailing silence lets server VAD close the last utterance.
    pcm += b"\x00\x00" * RATE
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with websockets.connect(url, additional_headers=headers, max_size=2**22) as ws:
        async def reader() -> None:
            async for message in ws:
                event = json.loads(message)
                kind = event["type"]
                if kind.endswith("transcription.delta"):
                    print(event["delta"], end="", flush=True)
                elif kind.endswith("transcription.completed"):
                    print(f"\n[final] {event['transcript']}")
                elif kind == "error":
                    print(f"\n[error] {event['error']['message']}")

        task = asyncio.create_task(reader())
        chunk = RATE // 10 * 2  # 100 ms of PCM16
        for i in range(0, len(pcm), chunk):
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(pcm[i:i + chunk]).decode()}))
            await asyncio.sleep(0.1 / speed)
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await asyncio.sleep(3)
        task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wav")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--speed", type=float, default=1.0, help="1.0 = real time")
    args = parser.parse_args()
    asyncio.run(stream(args.wav, args.url, args.api_key, args.speed))


if __name__ == "__main__":
    main()
