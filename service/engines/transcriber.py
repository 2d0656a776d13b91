"""The transcription loop: windows, temperature fallback, guards and segments, batched across requests.

This is OpenAI's ``transcribe()`` algorithm (also faster-whisper's), run in lockstep over many
requests: every live request contributes its current 30-second window to one encoder batch,
decoding happens in groups that share a temperature and prompt length, and each request then
advances its own ``seek``. Seeking to the last complete timestamp pair is what keeps words from
being lost or doubled at window borders on long audio.

Guards against invented text:
* **silence**: a window whose audio peak is below ``silence_dbfs`` is not decoded at all;
* **no-speech**: a window whose no-speech probability is high *and* whose decode is unconfident
  (avg log-prob below threshold) is skipped, as in OpenAI's reference;
* **repetition**: a window still over the compression-ratio threshold after the last fallback
  temperature (a looping decode) is dropped rather than returned;
* **confidence** (robust models only): a window whose final decode averages below
  ``GuardConfig.min_avg_logprob`` per token is dropped whatever its no-speech probability. A LoRA
  adapter trained on text targets leaves Whisper's no-speech head untrained: on the shipped robust
  adapters it reads below 0.01 on every clip, so the no-speech gate above never fires there and
  unintelligible audio comes back as confident-looking invented text. A checkpoint bundle may set
  this floor (``robust_logprob_gate``) for the robust path; the base path keeps OpenAI's gate alone.
  The shipped bundles leave it off: it trades WER for fewer hallucinations (docs/training.md);
* **base no-speech** (robust models only): with a :class:`NoSpeechProbe` (a bundle's
  ``robust_no_speech_gate``), the base model reads each window's no-speech probability before the
  robust model decodes it, and a window above the gate is skipped undecoded. This restores the
  no-speech gate the adapter lost, with a head that still works (:mod:`service.engines.no_speech_probe`);
* **no words**: a segment with no letter or digit (``". . ."``, a lone ``"-"``) is dropped. Whisper
  emits these on faint noise when a sampled fallback decode slips under the no-speech gate; they
  carry nothing a user can read, and keeping them made noise-only output depend on sampling luck.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from service.engines.base import Segment, TranscriptionOptions, TranscriptionResult
from service.engines.decoding import TokenDecoder, WindowDecode
from service.engines.features import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, SAMPLE_RATE, LogMel, pad_or_trim
from service.engines.no_speech_probe import NoSpeechProbe
from service.engines.vocabulary import WhisperVocabulary
from service.engines.whisper_runner import WhisperRunner
from service.scoring import compression_ratio

TIME_PRECISION = 0.02  # seconds per timestamp token
INPUT_STRIDE = 2  # mel frames per timestamp step


@dataclass
class GuardConfig:
    silence_dbfs: float = -60.0
    drop_repetitive: bool = True
    #: Drop a window whose final decode's mean token log-prob is below this (None: no such gate).
    min_avg_logprob: float | None = None


@dataclass
class WindowConfig:
    """How much of Whisper's 30-second padding a window that holds less audio keeps.

    Whisper always encodes 30 s; for a 3-second clip that is 90 % padding, and the encoder costs
    the same for every window. With ``trim`` a window holding ``size`` frames of audio is encoded as
    ``size + margin_frames`` frames rounded up to ``quantum_frames`` (so few distinct shapes occur),
    capped at the full 3000. The margin of silence after the speech is what keeps the decoder ending
    the text where the audio ends (docs/benchmarks.md has the measured accuracy).
    """

    trim: bool = False
    margin_frames: int = 100
    quantum_frames: int = 100

    def frames(self, size: int, trim: bool | None = None) -> int:
        """Encoder frames for a window holding ``size`` frames of audio (``trim`` overrides the default)."""
        if not (self.trim if trim is None else trim) or size >= N_FRAMES:
            return N_FRAMES
        wanted = size + self.margin_frames
        rounded = -(-wanted // self.quantum_frames) * self.quantum_frames
        return int(min(N_FRAMES, max(2, rounded + rounded % 2)))


@dataclass
class _Job:
    """One request walking through its windows."""

    audio: np.ndarray
    mel: torch.Tensor
    options: TranscriptionOptions
    language: str | None
    generator: torch.Generator | None
    seek: int = 0
    segments: list[Segment] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    language_probability: float = 1.0
    dropped_windows: int = 0
    no_speech_gated_windows: int = 0
    base_no_speech_probs: list[float] = field(default_factory=list)

    @property
    def content_frames(self) -> int:
        return self.mel.shape[-1] - N_FRAMES

    @property
    def done(self) -> bool:
        return self.seek >= self.content_frames


class Transcriber:
    """Turns audio arrays into :class:`TranscriptionResult` with one loaded model."""

    def __init__(self, runner: WhisperRunner, vocab: WhisperVocabulary, tokenizer, log_mel: LogMel,
                 max_batch_size: int = 8, guards: GuardConfig | None = None,
                 window: WindowConfig | None = None, probe: NoSpeechProbe | None = None) -> None:
        self.runner = runner
        #: The base model's no-speech head, asked before each window is decoded (robust path only;
        #: see :mod:`service.engines.no_speech_probe`).
        self.probe = probe
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.log_mel = log_mel
        self.max_batch_size = max_batch_size
        self.guards = guards or GuardConfig()
        self.window = window or WindowConfig()
        self.decoder = TokenDecoder(runner, vocab)

    def transcribe(self, audios: list[np.ndarray], options: list[TranscriptionOptions]
                   ) -> list[TranscriptionResult]:
        jobs = [self._new_job(a, o) for a, o in zip(audios, options)]
        while True:
            live = [j for j in jobs if not j.done]
            if not live:
                break
            for start in range(0, len(live), self.max_batch_size):
                self._advance(live[start:start + self.max_batch_size])
        return [self._result(j) for j in jobs]

    # -- one window for each of up to max_batch_size jobs ---------------------------------------
    def _advance(self, jobs: list[_Job]) -> None:
        sizes = [min(N_FRAMES, j.content_frames - j.seek) for j in jobs]
        silent = [self._is_silent(j, size) for j, size in zip(jobs, sizes)]
        active = [i for i, s in enumerate(silent) if not s]
        for i, s in enumerate(silent):
            if s:
                jobs[i].seek += sizes[i]
        if not active:
            return
        # The probe runs before the robust encoder when every window's language is known (always on an
        # English-only model), so a skipped window costs one base encoder pass and nothing else.
        probe_first = self.probe is not None and all(jobs[i].language is not None for i in active)
        if probe_first:
            active = [active[pos] for pos in self._probe_no_speech([jobs[i] for i in active],
                                                                   [sizes[i] for i in active])]
            if not active:
                return
        states, lengths = self._encode([jobs[i] for i in active], [sizes[i] for i in active])
        for pos, i in enumerate(active):
            if jobs[i].language is None and self.vocab.multilingual:
                self._detect_language(jobs[i], states[pos:pos + 1, :int(lengths[pos])])
        if self.probe is not None and not probe_first:
            rows = self._probe_no_speech([jobs[i] for i in active], [sizes[i] for i in active])
            if len(rows) < len(active):
                active, states, lengths = [active[pos] for pos in rows], states[rows], lengths[rows]
                if not active:
                    return
        decodes = self._decode_with_fallback([jobs[i] for i in active], states, lengths)
        for pos, i in enumerate(active):
            self._consume(jobs[i], decodes[pos], sizes[i])

    def _encode(self, jobs: list[_Job], sizes: list[int], runner: WhisperRunner | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode each job's current window (with ``runner``, default this transcriber's own model);
        windows of one length share one encoder batch.

        Returns the states padded to the longest window and each row's valid length (the decoder
        masks the rest), so rows are decoded together whatever their window length.
        """
        runner = runner or self.runner
        frames = [self.window.frames(size, job.options.trim_padding) for job, size in zip(jobs, sizes)]
        by_length: dict[int, list[int]] = {}
        for i, f in enumerate(frames):
            by_length.setdefault(f, []).append(i)
        longest = max(frames) // 2
        states: torch.Tensor | None = None
        for f, rows in by_length.items():
            mels = torch.stack([pad_or_trim(jobs[i].mel[:, jobs[i].seek:jobs[i].seek + sizes[i]], f) for i in rows])
            encoded = runner.encode(mels)
            if states is None:
                states = encoded.new_zeros((len(jobs), longest, encoded.shape[-1]))
            states[rows, :encoded.shape[1]] = encoded
        assert states is not None
        return states, torch.tensor([f // 2 for f in frames], dtype=torch.long)

    def _probe_no_speech(self, jobs: list[_Job], sizes: list[int]) -> list[int]:
        """Ask the probe (the base model) whether each window holds speech; skip those it says do not.

        Returns the positions in ``jobs`` whose window is still to be decoded; a skipped window's job
        has advanced past it, as a window dropped by the no-speech gate does.
        """
        probe = self.probe
        assert probe is not None
        states, lengths = self._encode(jobs, sizes, probe.runner)
        probabilities = probe.probabilities(states, lengths, [j.language for j in jobs], [j.options.task for j in jobs])
        rows = []
        for pos, (job, size, p) in enumerate(zip(jobs, sizes, probabilities)):
            job.base_no_speech_probs.append(round(p, 4))
            if probe.silent(p):
                job.no_speech_gated_windows += 1
                job.seek += size
            else:
                rows.append(pos)
        return rows

    def _is_silent(self, job: _Job, size: int) -> bool:
        start = job.seek * HOP_LENGTH
        chunk = job.audio[start:start + size * HOP_LENGTH]
        peak = float(np.max(np.abs(chunk))) if chunk.size else 0.0
        return peak <= 10 ** (self.guards.silence_dbfs / 20)

    def _detect_language(self, job: _Job, state: torch.Tensor) -> None:
        dstate = self.runner.start(state, 1)
        logits = self.runner.step(torch.tensor([[self.vocab.sot]]), dstate)[0, -1]
        codes = list(self.vocab.language_tokens)
        ids = torch.tensor([self.vocab.language_tokens[c] for c in codes])
        probs = torch.softmax(logits[ids], dim=-1)
        best = int(probs.argmax())
        job.language, job.language_probability = codes[best], float(probs[best])

    def _decode_with_fallback(self, jobs: list[_Job], states: torch.Tensor,
                              lengths: torch.Tensor) -> list[WindowDecode]:
        results: list[WindowDecode | None] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        attempt = 0
        while pending:
            groups: dict[tuple[float, int, int, int], list[int]] = {}
            for i in pending:
                temps = jobs[i].options.temperatures or (0.0,)
                prompt = self._prompt(jobs[i])
                key = (temps[min(attempt, len(temps) - 1)], len(prompt), jobs[i].options.beam_size,
                       jobs[i].options.best_of)
                groups.setdefault(key, []).append(i)
            still: list[int] = []
            for (temperature, _, beam_size, best_of), members in groups.items():
                decodes = self.decoder.decode(
                    states[members], [self._prompt(jobs[i]) for i in members], temperature,
                    max(jobs[i].options.max_new_tokens for i in members),
                    [jobs[i].generator for i in members], lengths=lengths[members], beam_size=beam_size,
                    best_of=best_of)
                for i, d in zip(members, decodes):
                    results[i] = d
                    temps = jobs[i].options.temperatures or (0.0,)
                    if attempt + 1 < len(temps) and self._needs_fallback(jobs[i].options, d):
                        still.append(i)
            pending = still
            attempt += 1
        return results  # type: ignore[return-value]

    def _needs_fallback(self, opts: TranscriptionOptions, d: WindowDecode) -> bool:
        text = self.tokenizer.decode([t for t in d.tokens if t < self.vocab.eot])
        failed = (compression_ratio(text) > opts.compression_ratio_threshold
                  or d.avg_logprob < opts.logprob_threshold)
        if d.no_speech_prob > opts.no_speech_threshold and d.avg_logprob < opts.logprob_threshold:
            return False  # silence: falling back would only invent text
        return failed

    def _prompt(self, job: _Job) -> list[int]:
        previous: list[int] = []
        if job.options.prompt:
            previous = self.tokenizer.encode(" " + job.options.prompt.strip(), add_special_tokens=False)
        if job.options.condition_on_previous_text:
            previous = previous + job.tokens
        return self.vocab.prompt(job.language, job.options.task, previous or None)

    # -- turning a window's tokens into segments --------------------------------------------------
    def _consume(self, job: _Job, d: WindowDecode, size: int) -> None:
        opts = job.options
        window_start = job.seek
        time_offset = window_start / FRAMES_PER_SECOND
        text_all = self.tokenizer.decode([t for t in d.tokens if t < self.vocab.eot])
        ratio = compression_ratio(text_all)
        skip = d.no_speech_prob > opts.no_speech_threshold and d.avg_logprob < opts.logprob_threshold
        loop = self.guards.drop_repetitive and ratio > opts.compression_ratio_threshold
        floor = self.guards.min_avg_logprob
        unsure = floor is not None and d.avg_logprob < floor
        if skip or loop or unsure or not d.tokens:
            job.dropped_windows += int(skip or loop or unsure)
            job.seek += size
            return
        tokens = d.tokens
        ts = self.vocab.timestamp_begin
        is_ts = [t >= ts for t in tokens]
        single_ending = len(is_ts) >= 2 and is_ts[-2:] == [False, True]
        consecutive = [i + 1 for i in range(len(is_ts) - 1) if is_ts[i] and is_ts[i + 1]]
        duration = job.content_frames / FRAMES_PER_SECOND
        pieces: list[tuple[float, float, list[int]]] = []
        if consecutive:
            slices = consecutive + ([len(tokens)] if single_ending else [])
            last = 0
            for cut in slices:
                part = tokens[last:cut]
                start = time_offset + (part[0] - ts) * TIME_PRECISION
                end = time_offset + (part[-1] - ts) * TIME_PRECISION
                pieces.append((start, end, part))
                last = cut
            if single_ending:
                job.seek += size
            else:
                job.seek += (tokens[last - 1] - ts) * INPUT_STRIDE
        else:
            seg_duration = size / FRAMES_PER_SECOND
            stamps = [t for t in tokens if t >= ts]
            if stamps and stamps[-1] != ts:
                seg_duration = (stamps[-1] - ts) * TIME_PRECISION
            pieces.append((time_offset, time_offset + seg_duration, tokens))
            job.seek += size
        if job.seek <= window_start:  # a zero-length advance would loop forever
            job.seek = window_start + size
        for start, end, part in pieces:
            text_tokens = [t for t in part if t < self.vocab.eot]
            text = self.tokenizer.decode(text_tokens)
            if not any(ch.isalnum() for ch in text):
                continue
            job.segments.append(Segment(
                id=len(job.segments), seek=window_start, start=round(min(start, duration), 3),
                end=round(min(max(end, start), duration), 3), text=text, tokens=part,
                temperature=d.temperature, avg_logprob=d.avg_logprob, compression_ratio=ratio,
                no_speech_prob=d.no_speech_prob))
            job.tokens.extend(text_tokens)

    def _new_job(self, audio: np.ndarray, options: TranscriptionOptions) -> _Job:
        gen = None
        if options.seed is not None:
            gen = torch.Generator().manual_seed(options.seed)
        language = options.language if self.vocab.multilingual else "en"
        return _Job(audio=audio, mel=self.log_mel(audio), options=options, language=language, generator=gen)

    def _result(self, job: _Job) -> TranscriptionResult:
        text = "".join(s.text for s in job.segments).strip()
        return TranscriptionResult(
            text=text, segments=job.segments, language=job.language or "en",
            duration=len(job.audio) / SAMPLE_RATE, language_probability=job.language_probability,
            adapter=job.options.adapter, extras=self._extras(job))

    def _extras(self, job: _Job) -> dict:
        extras: dict = {"dropped_windows": job.dropped_windows}
        if self.probe is not None:
            extras["no_speech_gated_windows"] = job.no_speech_gated_windows
            extras["base_no_speech_probs"] = job.base_no_speech_probs
        return extras
