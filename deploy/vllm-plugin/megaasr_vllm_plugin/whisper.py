"""The Whisper subclass: vLLM's model with OpenAI's decoder prompt (see the package docstring)."""

from __future__ import annotations

from vllm.model_executor.models.whisper import WhisperForConditionalGeneration

from megaasr_vllm_plugin.prompt import MULTILINGUAL_MIN_VOCAB, decoder_prompt


class MegaAsrWhisper(WhisperForConditionalGeneration):
    """vLLM's Whisper with a prompt that English-only checkpoints understand."""

    @classmethod
    def get_generation_prompt(cls, stt_params):
        prompt = super().get_generation_prompt(stt_params)
        vocab_size = getattr(stt_params.model_config.hf_config, "vocab_size", MULTILINGUAL_MIN_VOCAB)
        prompt["decoder_prompt"]["prompt"] = decoder_prompt(
            stt_params.language, stt_params.task_type, stt_params.request_prompt or "",
            multilingual=vocab_size >= MULTILINGUAL_MIN_VOCAB)
        return prompt
