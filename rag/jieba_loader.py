"""jieba, the Chinese word segmenter, loaded once per process for every part that segments Han text
(the BM25 analyzer, the knowledge graph's entity extraction)."""

from __future__ import annotations

import logging
import threading
from typing import Any

_lock = threading.Lock()
_loaded = False


def jieba_module() -> Any:
    """The ``jieba`` module with its default dictionary loaded (about 1 s, on the first Han text) and its
    start-up chatter silenced; ``jieba.dt`` segments, ``jieba.posseg.dt`` tags parts of speech."""
    global _loaded
    import jieba

    if not _loaded:
        with _lock:
            if not _loaded:
                jieba.setLogLevel(logging.WARNING)
                jieba.dt.initialize()
                _loaded = True
    return jieba
