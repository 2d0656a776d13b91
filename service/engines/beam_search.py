"""Beam search over one 30-second window per row, as OpenAI's reference decoder does it.

``whisper/decoding.py``'s ``BeamSearchDecoder`` with ``patience`` 1 and the maximum-likelihood
ranker without a length penalty, which is also what faster-whisper and ``whisper --beam_size 5``
run at temperature 0:

* every live beam proposes its ``beam_size + 1`` most likely next tokens (after the logit rules);
  the ``beam_size`` best unfinished continuations of a window become its next beams, and the ones
  that end in EOT are kept as finished candidates;
* a window is done once it holds ``beam_size`` finished candidates (then its rows leave the batch);
  a window still open after ``max_new`` tokens adds its best open beams as candidates;
* the answer is the candidate with the highest log-probability per token (sum / length, EOT
  excluded from the length, included in the sum), so long answers are not punished for length.

Each window's beams are ``beam_size`` consecutive decoder rows that share its cross-attention keys
(:meth:`WhisperRunner.start` with ``group_size``); reordering beams only permutes the self-attention
cache within the group. The no-speech probability is read at the start-of-transcript position,
before the beams part, so it is the same as the greedy decode's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from service.engines.decoding import TokenDecoder, WindowDecode


def beam_search(decoder: TokenDecoder, encoder_states: torch.Tensor, prompts: list[list[int]], max_new: int,
                beam_size: int, lengths: torch.Tensor | None = None) -> list[WindowDecode]:
    """Decode each window of ``encoder_states`` with ``beam_size`` beams; prompts share one length."""
    from service.engines.decoding import WindowDecode

    runner, vocab = decoder.runner, decoder.vocab
    windows, k = encoder_states.shape[0], beam_size
    state = runner.start(encoder_states, len(prompts[0]) + max_new, lengths, group_size=k)
    logits = runner.step(torch.tensor(prompts, dtype=torch.long).repeat_interleave(k, dim=0), state)
    sot_index = prompts[0].index(vocab.sot)
    no_speech = torch.softmax(logits[::k, sot_index], dim=-1)[:, vocab.no_speech].tolist()
    logits = logits[:, -1]

    live = list(range(windows))  # the window each group of k rows decodes
    beams: list[list[tuple[int, ...]]] = [[()] * k for _ in range(windows)]
    sums: list[list[float]] = [[0.0] * k for _ in range(windows)]
    finished: list[dict[tuple[int, ...], float]] = [{} for _ in range(windows)]
    for step in range(max_new):
        histories = [list(seq) for w in live for seq in beams[w]]
        _, logprobs = decoder.rules(logits, histories, first=step == 0)
        top_lp, top_tok = logprobs.topk(k + 1, dim=-1)
        top_lp, top_tok = top_lp.tolist(), top_tok.tolist()
        still: list[int] = []
        source_rows: list[int] = []
        for g, w in enumerate(live):
            scores: dict[tuple[int, ...], float] = {}
            sources: dict[tuple[int, ...], int] = {}
            for j in range(k):
                row = g * k + j
                for lp, tok in zip(top_lp[row], top_tok[row]):
                    score = sums[w][j] + lp
                    if score == float("-inf"):
                        continue
                    seq = beams[w][j] + (tok,)
                    scores[seq] = score
                    sources[seq] = row
            next_beams, next_sums, rows = [], [], []
            newly: dict[tuple[int, ...], float] = {}
            for seq in sorted(scores, key=scores.__getitem__, reverse=True):
                if seq[-1] == vocab.eot:
                    newly[seq[:-1]] = scores[seq]
                else:
                    next_beams.append(seq)
                    next_sums.append(scores[seq])
                    rows.append(sources[seq])
                    if len(next_beams) == k:
                        break
            for seq in sorted(newly, key=newly.__getitem__, reverse=True):
                if len(finished[w]) >= k:
                    break
                finished[w].setdefault(seq, newly[seq])
            if len(finished[w]) >= k or not next_beams:
                continue  # done: its rows leave the batch
            while len(next_beams) < k:  # fewer live continuations than beams: repeat the last (never ranked twice)
                next_beams.append(next_beams[-1])
                next_sums.append(float("-inf"))
                rows.append(rows[-1])
            beams[w], sums[w] = next_beams, next_sums
            still.append(w)
            source_rows += rows
        live = still
        if not live or step == max_new - 1:
            break
        state = state.select(torch.tensor(source_rows, dtype=torch.long, device=logits.device))
        last = torch.tensor([[beams[w][j][-1]] for w in live for j in range(k)], dtype=torch.long)
        logits = runner.step(last, state)[:, -1]

    out = []
    for w in range(windows):
        candidates = dict(finished[w])
        if len(candidates) < k:  # ran out of tokens: the best open beams count as answers
            for j in sorted(range(k), key=lambda j: sums[w][j], reverse=True):
                if len(candidates) >= k or sums[w][j] == float("-inf"):
                    break
                candidates.setdefault(beams[w][j], sums[w][j])
        best = max(candidates, key=lambda seq: candidates[seq] / max(1, len(seq)))
        out.append(WindowDecode(list(best), candidates[best], float(no_speech[w]), 0.0))
    return out
