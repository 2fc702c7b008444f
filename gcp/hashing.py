"""Content hashes shared by the encoder cache, the teachers and the project store.

This module owns `text_hash`, the one key under which any text is cached or stored. It has
no dependencies beyond the standard library. It does not normalise the text: two strings
that differ only in whitespace or Unicode normal form get different hashes.
"""

import hashlib


def text_hash(text: str) -> str:
    """Return the SHA-256 hex digest of a text encoded as UTF-8.

    Parameters
    ----------
    text : str
        The text, hashed exactly as given.

    Returns
    -------
    str
        64 lowercase hexadecimal characters.

    Raises
    ------
    TypeError
        If `text` is not a `str`.
    """
    if not isinstance(text, str):
        raise TypeError(f"text_hash expects a str, got {type(text).__name__}: {text!r:.80}")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
