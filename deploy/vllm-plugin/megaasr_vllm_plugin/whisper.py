"""The Whisper subclass: vLLM's model with OpenAI's decoder prompt (see the package docstring)."""

from __future__ import annotations

from vllm.model_executor.models.whisper import WhisperForConditionalGeneration

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


class MegaAsrWhisper(WhisperForConditionalGeneration):
    """vLLM's Whisper with a prompt that English-only checkpoints understand."""

    @classmethod
    def get_generation_prompt(cls, stt_params):  # noqa: ANN001, ANN206 (vLLM's own types)
        prompt = super().get_generation_prompt(stt_params)
        vocab_size = getattr(stt_params.model_config.hf_config, "vocab_size", MULTILINGUAL_MIN_VOCAB)
        prompt["decoder_prompt"]["prompt"] = decoder_prompt(
            stt_params.language, stt_params.task_type, stt_params.request_prompt or "",
            multilingual=vocab_size >= MULTILINGUAL_MIN_VOCAB)
        return prompt
