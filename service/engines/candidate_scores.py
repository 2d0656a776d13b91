"""How likely a Whisper model finds each of several transcripts of one window, teacher-forced.

Why: an ensemble's transcripts of one clip can be compared by the models themselves instead of by
counting words (the ROVER vote, :mod:`service.engines.rover`). Each candidate is scored as Whisper's own
decoders rank finished hypotheses (OpenAI's ``MaximumLikelihoodRanker`` without a length penalty,
faster-whisper, this project's beam search): the mean log-probability per token, end-of-text included,
here under the plain ``<|notimestamps|>`` prompt because a transcript's timestamps differ between models.
An empty candidate is scored by its end-of-text token alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from service.engines.vocabulary import WhisperVocabulary


def candidate_tokens(tokenizer, vocab: WhisperVocabulary, texts: Sequence[str]) -> list[list[int]]:
    """Each text's tokens as Whisper writes them (leading space), followed by end-of-text."""
    return [(tokenizer.encode(" " + t.strip(), add_special_tokens=False) if t.strip() else []) + [vocab.eot]
            for t in texts]


@torch.inference_mode()
def mean_token_logprobs(model: torch.nn.Module, vocab: WhisperVocabulary, tokenizer, encoder_states: torch.Tensor,
                        texts: Sequence[str], language: str | None = "en") -> list[float]:
    """Mean log-probability per token of each of ``texts`` given one window's ``encoder_states`` [1, T, d].

    ``model`` is a ``WhisperForConditionalGeneration`` (merged or peft-wrapped); all texts go through its
    decoder as one padded batch.
    """
    if encoder_states.dim() != 3 or encoder_states.shape[0] != 1:
        raise ValueError(f"encoder_states must be one window [1, T, d], got {tuple(encoder_states.shape)}")
    if not texts:
        return []
    prefix = [*vocab.prompt(language if vocab.multilingual else None, "transcribe"), vocab.no_timestamps]
    targets = candidate_tokens(tokenizer, vocab, texts)
    width = len(prefix) + max(len(t) for t in targets) - 1
    inputs = torch.full((len(texts), width), vocab.eot, dtype=torch.long)
    for row, target in enumerate(targets):
        sequence = prefix + target[:-1]
        inputs[row, :len(sequence)] = torch.tensor(sequence)
    device = encoder_states.device
    states = encoder_states.expand(len(texts), -1, -1)
    logits = model(encoder_outputs=(states,), decoder_input_ids=inputs.to(device)).logits.float()
    logp = torch.log_softmax(logits, dim=-1).cpu()
    scores = []
    for row, target in enumerate(targets):
        positions = torch.arange(len(prefix) - 1, len(prefix) - 1 + len(target))
        scores.append(float(logp[row, positions, torch.tensor(target)].mean()))
    return scores


def window_scores(model: torch.nn.Module, log_mel, vocab: WhisperVocabulary, tokenizer, audio,
                  texts: Sequence[str], language: str | None = "en") -> list[float]:
    """:func:`mean_token_logprobs` of ``texts`` on the first 30 s window of ``audio`` (16 kHz samples).

    The window is padded to 30 s, as Whisper was trained; ``log_mel`` is the transcriber's front end.
    """
    from service.engines.features import pad_or_trim

    weight = next(model.parameters())
    mel = pad_or_trim(log_mel(audio))[None].to(device=weight.device, dtype=weight.dtype)
    with torch.inference_mode():
        states = model.get_encoder()(mel).last_hidden_state
    return mean_token_logprobs(model, vocab, tokenizer, states, texts, language)
