"""Batched token decoding for one 30-second window per row: greedy, sampled or beam search, with OpenAI's rules.

The logit rules follow OpenAI's reference decoder (``whisper/decoding.py``): suppress blank and
EOT at the first step, suppress the configured tokens, and the timestamp rules (timestamps come
in pairs, never decrease, the first token is a timestamp no later than ``max_initial_timestamp``,
and a timestamp is forced when their total probability beats every text token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from service.engines.beam_search import beam_search
from service.engines.vocabulary import WhisperVocabulary
from service.engines.whisper_runner import WhisperRunner


@dataclass
class WindowDecode:
    """The decode of one window: tokens without prompt or EOT, and its quality signals."""

    tokens: list[int]
    sum_logprob: float
    no_speech_prob: float
    temperature: float

    @property
    def avg_logprob(self) -> float:
        return self.sum_logprob / (len(self.tokens) + 1)


class TokenDecoder:
    """Decodes a batch of windows that share one prompt length and one temperature."""

    def __init__(self, runner: WhisperRunner, vocab: WhisperVocabulary) -> None:
        self.runner = runner
        self.vocab = vocab
        self._suppress = torch.tensor(sorted(set(vocab.suppress_tokens)), dtype=torch.long)
        self._begin_suppress = torch.tensor(sorted(set(vocab.begin_suppress_tokens) | {vocab.eot}),
                                            dtype=torch.long)

    @torch.inference_mode()
    def decode(self, encoder_states: torch.Tensor, prompts: list[list[int]], temperature: float,
               max_new_tokens: int, generators: list[torch.Generator | None] | None = None,
               lengths: torch.Tensor | None = None, beam_size: int = 1, best_of: int = 1) -> list[WindowDecode]:
        """Decode one window per row of ``encoder_states``; ``lengths`` gives each row's valid
        encoder positions when rows of different window lengths were padded together.

        At temperature 0 a ``beam_size`` above 1 runs beam search (:mod:`service.engines.beam_search`);
        sampled decodes (the fallback temperatures) draw ``best_of`` sequences per row and keep the
        one with the highest log-probability per token, as OpenAI's ``transcribe()`` and faster-whisper
        do (:meth:`_best_of`); the beam size does not apply to them.
        """
        batch = encoder_states.shape[0]
        prompt_len = len(prompts[0])
        if any(len(p) != prompt_len for p in prompts):
            raise ValueError("all prompts in one decode call must have the same length")
        max_new = max(1, min(max_new_tokens, self.runner.max_positions - prompt_len))
        if beam_size > 1 and temperature == 0.0:
            return beam_search(self, encoder_states, prompts, max_new, beam_size, lengths)
        if best_of > 1 and temperature > 0.0:
            return self._best_of(encoder_states, prompts, temperature, max_new, generators, lengths, best_of)
        state = self.runner.start(encoder_states, prompt_len + max_new, lengths)
        prompt = torch.tensor(prompts, dtype=torch.long)
        logits = self.runner.step(prompt, state)
        sot_index = prompts[0].index(self.vocab.sot)
        no_speech = torch.softmax(logits[:, sot_index], dim=-1)[:, self.vocab.no_speech].tolist()
        logits = logits[:, -1]

        rows = torch.arange(batch)  # original row of each live batch entry
        generated: list[list[int]] = [[] for _ in range(batch)]
        sum_logprobs = [0.0] * batch
        for step in range(max_new):
            logits, logprobs = self.rules(logits, [generated[r] for r in rows.tolist()], first=step == 0)
            if temperature == 0.0:
                next_tokens = logits.argmax(dim=-1)
            else:
                next_tokens = self._sample(logits / temperature, rows, generators)
            chosen = logprobs.gather(1, next_tokens[:, None])[:, 0].tolist()
            finished = []
            for i, (row, tok) in enumerate(zip(rows.tolist(), next_tokens.tolist())):
                sum_logprobs[row] += chosen[i]
                if tok == self.vocab.eot:
                    finished.append(i)
                else:
                    generated[row].append(tok)
            if finished:
                keep = torch.tensor([i for i in range(len(rows)) if i not in set(finished)], dtype=torch.long)
                if keep.numel() == 0:
                    break
                rows, next_tokens = rows[keep], next_tokens[keep]
                state = state.select(keep)
            if step == max_new - 1:
                break
            logits = self.runner.step(next_tokens[:, None], state)[:, -1]
        return [WindowDecode(generated[r], sum_logprobs[r], float(no_speech[r]), temperature)
                for r in range(batch)]

    def _best_of(self, encoder_states: torch.Tensor, prompts: list[list[int]], temperature: float,
                 max_new: int, generators: list[torch.Generator | None] | None, lengths: torch.Tensor | None,
                 best_of: int) -> list[WindowDecode]:
        """``best_of`` samples of each window, ranked as OpenAI's ``MaximumLikelihoodRanker`` without a
        length penalty: sum log-prob (EOT included) / tokens (EOT excluded), the same rank beam search uses.

        The samples are plain rows (each window's states repeated), drawn from the window's own generator
        one after the other, so a seeded request gets the same answer whatever else is in the batch.
        """
        k = best_of
        rows = torch.arange(encoder_states.shape[0]).repeat_interleave(k)
        samples = self.decode(encoder_states[rows], [prompts[r] for r in rows.tolist()], temperature, max_new,
                              [generators[r] for r in rows.tolist()] if generators else None,
                              lengths[rows] if lengths is not None else None)
        out = []
        for w in range(encoder_states.shape[0]):
            group = samples[w * k:(w + 1) * k]
            out.append(max(group, key=lambda d: d.sum_logprob / max(1, len(d.tokens))))
        return out

    def _sample(self, logits: torch.Tensor, rows: torch.Tensor,
                generators: list[torch.Generator | None] | None) -> torch.Tensor:
        probs = torch.softmax(logits, dim=-1)
        out = []
        for i, row in enumerate(rows.tolist()):
            gen = generators[row] if generators else None
            out.append(torch.multinomial(probs[i], 1, generator=gen))
        return torch.cat(out)

    def _apply_rules(self, logits: torch.Tensor, histories: list[list[int]], first: bool) -> torch.Tensor:
        """OpenAI's logit rules applied to a copy of ``logits`` [B, V]."""
        return self.rules(logits, histories, first)[0]

    def rules(self, logits: torch.Tensor, histories: list[list[int]], first: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ruled logits and their log-softmax (computed once: the decode loop needs both)."""
        v = self.vocab
        logits = logits.clone()
        neg_inf = float("-inf")
        if first:
            logits[:, self._begin_suppress] = neg_inf
        if self._suppress.numel():
            logits[:, self._suppress] = neg_inf
        logits[:, v.no_timestamps] = neg_inf
        ts = v.timestamp_begin
        for k, seq in enumerate(histories):
            last_ts = len(seq) >= 1 and seq[-1] >= ts
            penultimate_ts = len(seq) < 2 or seq[-2] >= ts
            if last_ts:
                if penultimate_ts:
                    logits[k, ts:] = neg_inf
                else:
                    logits[k, :v.eot] = neg_inf
            stamps = [t for t in seq if t >= ts]
            if stamps:
                floor = stamps[-1] if (last_ts and not penultimate_ts) else stamps[-1] + 1
                logits[k, ts:floor] = neg_inf
        if first:
            logits[:, :ts] = neg_inf
            logits[:, ts + v.max_initial_timestamp_index + 1:] = neg_inf
        logprobs = torch.log_softmax(logits, dim=-1)
        ts_mass = torch.logsumexp(logprobs[:, ts:], dim=-1)
        best_text = logprobs[:, :ts].max(dim=-1).values
        force = ts_mass > best_text
        if bool(force.any()):
            logits[force, :ts] = neg_inf
            logprobs[force] = torch.log_softmax(logits[force], dim=-1)
        return logits, logprobs
