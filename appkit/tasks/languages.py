"""ISO 639-1 language codes the translate task accepts, with the English names used in prompts.

Example:
    >>> from appkit.tasks.languages import language_name
    >>> language_name("de")
    'German'
"""

from __future__ import annotations

from appkit.tasks.errors import TaskInputError

LANGUAGES = {
    "ar": "Arabic", "bg": "Bulgarian", "ca": "Catalan", "cs": "Czech", "da": "Danish",
    "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian",
    "fa": "Persian", "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi",
    "hr": "Croatian", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "ms": "Malay", "nl": "Dutch",
    "no": "Norwegian", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
    "sk": "Slovak", "sl": "Slovenian", "sr": "Serbian", "sv": "Swedish", "th": "Thai",
    "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}


def language_name(code: str, *, field: str = "language") -> str:
    """The English name of an ISO 639-1 code.

    Raises:
        TaskInputError: for an unknown code, naming the field and the known codes.
    """
    name = LANGUAGES.get(code.strip().lower())
    if not name:
        raise TaskInputError(f"unknown {field} code '{code}'; use an ISO 639-1 code such as "
                          f"'en' or 'fr' (known: {', '.join(sorted(LANGUAGES))})")
    return name
