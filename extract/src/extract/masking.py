"""The one place the extractor hides secrets: logging, exception messages, stored URLs and reasons all
use it. The rules (URL userinfo, `apikey=`/`token=`/`key=`/`password=` values, known secrets) are
datapipe_common.masking's."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from datapipe_common.masking import MASK, mask_text, mask_url

__all__ = ["MASK", "MaskingFilter", "configure_logging", "mask_secret", "mask_url"]

Secrets = str | None | Iterable[str | None]


def _secrets(key: Secrets) -> tuple[str | None, ...]:
    return (key,) if key is None or isinstance(key, str) else tuple(key)


def mask_secret(text: str, key: Secrets) -> str:
    """`text` with the key (or every secret given), URL userinfo and secret query values replaced by ***."""
    return mask_text(text, _secrets(key))


class MaskingFilter(logging.Filter):
    """A handler filter: the formatted message (including exception text) never shows a secret."""

    def __init__(self, key: Secrets) -> None:
        super().__init__()
        self.secrets = _secrets(key)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message, self.secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info), self.secrets)
            record.exc_info = None
            record.msg = f"{record.msg}\n{record.exc_text}"
            record.exc_text = None
        return True


def configure_logging(key: Secrets, level: str = "INFO") -> None:
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
