"""The one exception type for bad input, so callers can tell it from a bug.

Every problem a user can cause -- a setting that cannot work, a missing or corrupt file, a text
with no words, a prime word outside the vocabulary, an option out of range -- raises
:class:`InputError` (or a subclass) with a message that says what is wrong and what to do. It is a
``ValueError``, so code that catches ``ValueError`` keeps working; the command line reports it in
one line with exit code 2, while any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user; the message is written for them."""
