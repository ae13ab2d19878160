"""A small bounded memo for values worked out from header text that repeats (tokens, URLs)."""

from __future__ import annotations

from typing import Any


class Memo:
    """A dict bounded in entries and in characters of text held: when a new entry would pass
    either bound, it starts over empty. Cheap to keep, and the values that do repeat come back
    after one miss. An entry larger than the whole budget is not kept at all.
    """

    __slots__ = ("chars", "data", "max_chars", "max_entries")

    def __init__(self, max_entries: int, max_chars: int) -> None:
        self.data: dict[Any, Any] = {}
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.chars = 0  # text held by the entries, in characters (as their callers count it)

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: Any) -> Any:
        """The value kept under ``key``, or None."""
        return self.data.get(key)

    def put(self, key: Any, value: Any, chars: int) -> None:
        """Keep ``value`` (not None) under ``key``; ``chars`` is the text the entry holds."""
        if chars > self.max_chars:
            return
        if len(self.data) >= self.max_entries or self.chars + chars > self.max_chars:
            self.data.clear()
            self.chars = 0
        self.data[key] = value
        self.chars += chars

    def clear(self) -> None:
        self.data.clear()
        self.chars = 0

    #: functools' name for it: what empties every analyzer cache before a test under mutmut
    #: (``tests/conftest.py``) empties these too; a kept ``redact_uri`` result hid its mutants.
    cache_clear = clear
