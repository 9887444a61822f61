"""The one place that hides the API key: logging, exception messages, stored URLs and reasons all use it."""

from __future__ import annotations

import logging
import re

MASK = "***"
# `apikey=...` in any URL or text, whatever the key is (also when we do not know it).
_APIKEY_PARAM = re.compile(r"(?i)(apikey=)[^&\s\"'#]+")
# Keys shorter than this are masked only where they appear as `apikey=` values: replacing a very short
# string everywhere would mangle ordinary text without protecting anything.
MIN_SUBSTRING_KEY_LEN = 4


def mask_secret(text: str, key: str | None) -> str:
    """`text` with every occurrence of `key` and every `apikey=` value replaced by ***."""
    if not text:
        return text
    if key and len(key) >= MIN_SUBSTRING_KEY_LEN and key in text:
        text = text.replace(key, MASK)
    return _APIKEY_PARAM.sub(rf"\g<1>{MASK}", text)


class MaskingFilter(logging.Filter):
    """A handler filter: the formatted message (including exception text) never shows the key."""

    def __init__(self, key: str | None) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secret(message, self.key)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = mask_secret(logging.Formatter().formatException(record.exc_info), self.key)
            record.exc_info = None
            record.msg = f"{record.msg}\n{record.exc_text}"
            record.exc_text = None
        return True


def configure_logging(key: str | None, level: str = "INFO") -> None:
    """stdlib logging to stderr, every record masked."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(MaskingFilter(key))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("urllib3").setLevel(logging.WARNING)
