"""Whisper decoder prompts as OpenAI builds them (pure: no vLLM import, unit-tested)."""

from __future__ import annotations

#: Multilingual Whisper vocabularies have 51865 tokens or more; English-only ones 51864
#: (openai-whisper's own test: ``model.is_multilingual = n_vocab >= 51865``).
MULTILINGUAL_MIN_VOCAB = 51865


def decoder_prompt(language: str | None, task: str, request_prompt: str, multilingual: bool) -> str:
    """OpenAI's prompt: optional ``<|startofprev|>`` context, then the start-of-transcript sequence."""
    previous = f"<|startofprev|> {request_prompt.strip()}" if request_prompt and request_prompt.strip() else ""
    if not multilingual:
        return previous + "<|startoftranscript|><|notimestamps|>"
    if language is None:
        raise ValueError("Language must be specified when creating the Whisper prompt")
    return previous + f"<|startoftranscript|><|{language}|><|{task}|><|notimestamps|>"
