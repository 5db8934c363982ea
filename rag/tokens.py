"""The one place that turns text into token counts (tiktoken ``o200k_base``, shipped with the package).

The BPE file is package data, checked against its sha256 on load, so nothing is downloaded.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import tiktoken
from tiktoken.load import load_tiktoken_bpe

ENCODING_NAME = "o200k_base"
_BPE_FILE = "o200k_base.tiktoken"
_BPE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
# The pattern and special tokens of tiktoken's own o200k_base definition.
_PAT = "|".join(  # noqa: FLY002 -- one alternative per line, as tiktoken writes it
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_SPECIAL = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    """The shared encoder; raises ``ValueError`` if the shipped file does not match its hash."""
    path = resources.files("rag.data").joinpath(_BPE_FILE)
    with resources.as_file(path) as local:
        ranks = load_tiktoken_bpe(str(local), expected_hash=_BPE_SHA256)
    return tiktoken.Encoding(name=ENCODING_NAME, pat_str=_PAT, mergeable_ranks=ranks, special_tokens=_SPECIAL)


def count_tokens(text: str) -> int:
    return len(encoding().encode_ordinary(text))


def token_prefix(text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` within ``max_tokens`` tokens (a character split by the cut is
    dropped, so the result is always a prefix of ``text``)."""
    enc = encoding()
    ids = enc.encode_ordinary(text)
    return text if len(ids) <= max_tokens else enc.decode(ids[:max_tokens], errors="ignore")
