"""The base model's no-speech probability, asked on the robust path's behalf.

Why: a LoRA adapter trained on text targets leaves Whisper's no-speech head untrained (on the shipped
adapters it reads below 0.01 on every clip, docs/training.md round 7), so OpenAI's no-speech gate never
fires on the robust path, and on music, hums and impacts the adapter writes loops and whole training
sentences where the base model writes nothing (docs/training.md, "Non-speech on a larger set"). The
base model's own head still knows: on those clips it reads 0.62-0.94.

So a bundle may set ``robust_no_speech_gate``: before the robust model decodes a window, the base
model encodes the same window and reads ``p(<|nospeech|>)`` at the start-of-transcript position, as
OpenAI's decoder does (same window length, same mel, the task's start-of-transcript sequence without
any previous-text prompt). A window whose probability is above the gate is skipped, not decoded, so
the rule costs one base encoder pass and one decoder step per robust window and saves the decode of
every skipped one. Unlike OpenAI's gate it does not also ask for a low log-prob: the adapter is
confident in what it invents (its memorised sentences are its most confident output).
"""

from __future__ import annotations

import torch

from service.engines.vocabulary import WhisperVocabulary
from service.engines.whisper_runner import WhisperRunner


class NoSpeechProbe:
    """A second (base) model's no-speech head with the threshold above which a window is skipped."""

    def __init__(self, runner: WhisperRunner, vocab: WhisperVocabulary, threshold: float) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"the no-speech gate must lie strictly between 0 and 1, got {threshold}")
        self.runner = runner
        self.vocab = vocab
        self.threshold = threshold

    @torch.inference_mode()
    def probabilities(self, encoder_states: torch.Tensor, lengths: torch.Tensor,
                      languages: list[str | None], tasks: list[str]) -> list[float]:
        """``p(<|nospeech|>)`` at the start-of-transcript position of each row.

        ``encoder_states`` must come from this probe's own runner (the base model's encoder). The
        start-of-transcript sequence is built from the probe's own vocabulary (a multilingual probe
        reads the row's language), without previous text.
        """
        prompts = [self.vocab.prompt(language, task) for language, task in zip(languages, tasks)]
        state = self.runner.start(encoder_states, len(prompts[0]), lengths)
        logits = self.runner.step(torch.tensor(prompts, dtype=torch.long), state)
        sot_index = prompts[0].index(self.vocab.sot)
        return torch.softmax(logits[:, sot_index].float(), dim=-1)[:, self.vocab.no_speech].tolist()

    def silent(self, probability: float) -> bool:
        """True when the base model says the window holds no speech."""
        return probability > self.threshold
