"""The emulator's tokenizer: one token per word or per punctuation mark.

A token is a run of word characters (``\\w+``, Unicode-aware, so ``don`` ``'`` ``t`` is three
tokens and ``naïve`` is one) or a single character that is neither a word character nor
whitespace. Whitespace is never a token. It is deliberately simple so a test can count tokens
by eye; it makes no attempt to resemble any provider's BPE tokenizer.
"""

from __future__ import annotations

import re

TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` (see the module docstring for the rule)."""
    return sum(1 for _ in TOKEN_RE.finditer(text))


def pieces(text: str) -> list[str]:
    """Split ``text`` into stream pieces, one per token.

    Each piece is the whitespace before a token followed by the token, and trailing whitespace
    joins the last piece, so ``"".join(pieces(text)) == text`` always holds. Text without any
    token yields a single piece (the text itself) when non-empty.
    """
    out: list[str] = []
    start = 0
    for match in TOKEN_RE.finditer(text):
        out.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        if out:
            out[-1] += text[start:]
        else:
            out.append(text[start:])
    return out


def truncate(text: str, max_tokens: int | None) -> tuple[str, bool]:
    """Cut ``text`` after its ``max_tokens``-th token; return the text and whether it was cut."""
    if max_tokens is None:
        return text, False
    if max_tokens <= 0:
        return "", bool(TOKEN_RE.search(text))
    for i, match in enumerate(TOKEN_RE.finditer(text), start=1):
        if i == max_tokens:
            rest = text[match.end() :]
            if TOKEN_RE.search(rest):
                return text[: match.end()], True
            return text, False
    return text, False
