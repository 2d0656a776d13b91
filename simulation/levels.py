"""Signal levels measured the way a listener would: on the frames where speech is.

Why a module of its own: the SNR target of ``add_noise`` and the SNR the report gives back must
use one definition. Averaging power over a whole utterance counts its pauses and understates the
speech level by several dB, so SNR here is measured on *speech-active frames* only.

Choice (the paper is silent): a frame is active when its power is within ``ACTIVE_RANGE_DB``
(40 dB) of the loudest frame and above an absolute floor of -80 dBFS. Frames are 20 ms, without
overlap; a signal shorter than one frame is one frame.
"""

from __future__ import annotations

import numpy as np

FRAME_MS = 20.0
ACTIVE_RANGE_DB = 40.0
ABSOLUTE_FLOOR_DBFS = -80.0
_EPS = 1e-20


def frame_powers(audio: np.ndarray, sr: int, frame_ms: float = FRAME_MS) -> np.ndarray:
    """Mean square of consecutive non-overlapping frames (the ragged tail is its own frame)."""
    frame = max(1, round(sr * frame_ms / 1000.0))
    n = len(audio)
    if n == 0:
        return np.zeros(0)
    x = np.asarray(audio, dtype=np.float64)
    full = n // frame
    powers = []
    if full:
        powers.append(np.mean(x[: full * frame].reshape(full, frame) ** 2, axis=1))
    if n - full * frame:
        powers.append(np.array([np.mean(x[full * frame:] ** 2)]))
    return np.concatenate(powers)


def active_frame_mask(
    audio: np.ndarray,
    sr: int,
    frame_ms: float = FRAME_MS,
    range_db: float = ACTIVE_RANGE_DB,
    floor_dbfs: float = ABSOLUTE_FLOOR_DBFS,
) -> np.ndarray:
    """Boolean mask of speech-active frames (within ``range_db`` of the loudest, above the floor)."""
    p = frame_powers(audio, sr, frame_ms)
    if p.size == 0:
        return np.zeros(0, dtype=bool)
    threshold = max(p.max() * 10.0 ** (-range_db / 10.0), 10.0 ** (floor_dbfs / 10.0))
    return p >= threshold


def masked_power(audio: np.ndarray, sr: int, mask: np.ndarray, frame_ms: float = FRAME_MS) -> float:
    """Mean power of ``audio`` over the frames selected by ``mask`` (same framing)."""
    p = frame_powers(audio, sr, frame_ms)
    if not mask.any():
        return 0.0
    # Weight by frame length so a short ragged tail frame does not count as a full one.
    frame = max(1, round(sr * frame_ms / 1000.0))
    lengths = np.full(p.shape, frame, dtype=np.float64)
    if len(audio) % frame:
        lengths[-1] = len(audio) % frame
    return float(np.sum(p[mask] * lengths[mask]) / np.sum(lengths[mask]))


def active_power(audio: np.ndarray, sr: int) -> float | None:
    """Mean power over speech-active frames, or None when nothing is active (digital silence)."""
    mask = active_frame_mask(audio, sr)
    if not mask.any():
        return None
    return masked_power(audio, sr, mask)


def snr_on_active_frames(speech: np.ndarray, noise: np.ndarray, sr: int) -> float | None:
    """SNR in dB of ``speech`` over ``noise`` on the frames where ``speech`` is active.

    Returns None where the SNR is undefined (silent speech) and +inf for zero noise.
    """
    mask = active_frame_mask(speech, sr)
    if not mask.any():
        return None
    ps = masked_power(speech, sr, mask)
    pn = masked_power(noise, sr, mask)
    if pn <= 0:
        return float("inf")
    return float(10.0 * np.log10(ps / pn))
