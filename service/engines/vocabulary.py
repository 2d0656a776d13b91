"""Whisper's special tokens, read from the checkpoint's tokenizer and generation config.

Both the English-only (``<|nocaptions|>``) and the newer multilingual (``<|nospeech|>``) token
names are understood, so any HF Whisper folder works, not only ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LANGUAGE_NAMES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian",
    "kn": "kannada", "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque",
    "is": "icelandic", "hy": "armenian", "ne": "nepali", "mn": "mongolian", "bs": "bosnian",
    "kk": "kazakh", "sq": "albanian", "sw": "swahili", "gl": "galician", "mr": "marathi", "pa": "punjabi",
    "si": "sinhala", "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans",
    "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese", "ht": "haitian creole",
    "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese", "sa": "sanskrit",
    "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog", "mg": "malagasy",
    "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa", "ba": "bashkir",
    "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}
LANGUAGE_CODES = {name: code for code, name in LANGUAGE_NAMES.items()}


@dataclass(frozen=True)
class WhisperVocabulary:
    sot: int
    eot: int
    transcribe: int
    translate: int
    no_timestamps: int
    no_speech: int
    sot_prev: int
    timestamp_begin: int
    vocab_size: int
    language_tokens: dict[str, int]  # "en" -> id; empty for English-only models
    suppress_tokens: tuple[int, ...]
    begin_suppress_tokens: tuple[int, ...]
    max_initial_timestamp_index: int

    @property
    def multilingual(self) -> bool:
        return bool(self.language_tokens)

    def normalise_language(self, language: str | None) -> str | None:
        """Accept 'en', 'EN', 'english'; return the code, or raise ValueError naming the options."""
        if language is None or language == "":
            return None
        lang = language.strip().lower()
        lang = LANGUAGE_CODES.get(lang, lang)
        if not self.multilingual:
            if lang != "en":
                raise ValueError(f"This model is English-only; language '{language}' is not supported.")
            return "en"
        if lang not in self.language_tokens:
            raise ValueError(f"Unsupported language '{language}'. Use an ISO-639-1 code such as 'en' or 'de'.")
        return lang

    def prompt(self, language: str | None, task: str, previous: list[int] | None = None) -> list[int]:
        """The decoder prompt: optional previous-text context, then the start-of-transcript sequence."""
        tokens: list[int] = []
        if previous:
            tokens = [self.sot_prev, *previous[-(223):]]
        tokens.append(self.sot)
        if self.multilingual:
            tokens.append(self.language_tokens[language or "en"])
            tokens.append(self.translate if task == "translate" else self.transcribe)
        return tokens


def load_vocabulary(tokenizer: Any, generation_config: Any, vocab_size: int) -> WhisperVocabulary:
    """Read the special-token ids from a transformers tokenizer and generation config."""

    def tid(*names: str) -> int:
        for name in names:
            value = tokenizer.convert_tokens_to_ids(name)
            # Unknown tokens map to unk (which is <|endoftext|> in Whisper): check the round trip.
            if value is not None and tokenizer.convert_ids_to_tokens(int(value)) == name:
                return int(value)
        raise ValueError(f"tokenizer lacks the special token {names[0]}")

    no_timestamps = tid("<|notimestamps|>")
    lang_to_id = getattr(generation_config, "lang_to_id", None) or {}
    is_multilingual = bool(getattr(generation_config, "is_multilingual", bool(lang_to_id)))
    languages = {k.strip("<|>"): int(v) for k, v in lang_to_id.items()} if is_multilingual else {}
    return WhisperVocabulary(
        sot=tid("<|startoftranscript|>"),
        eot=tid("<|endoftext|>"),
        transcribe=tid("<|transcribe|>"),
        translate=tid("<|translate|>"),
        no_timestamps=no_timestamps,
        no_speech=tid("<|nospeech|>", "<|nocaptions|>"),
        sot_prev=tid("<|startofprev|>"),
        timestamp_begin=no_timestamps + 1,
        vocab_size=vocab_size,
        language_tokens=languages,
        suppress_tokens=tuple(int(t) for t in (getattr(generation_config, "suppress_tokens", None) or [])),
        begin_suppress_tokens=tuple(int(t) for t in (getattr(generation_config, "begin_suppress_tokens", None)
                                                      or [])),
        max_initial_timestamp_index=int(getattr(generation_config, "max_initial_timestamp_index", None) or 50),
    )
