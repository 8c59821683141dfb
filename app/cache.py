"""A least-recently-used cache bounded in bytes, shared by every visitor of one server.

Streamlit's own caches bound the number of entries, not their size: eight cached uploads of
20 MB each would hold several hundred MB of words. Here every entry has a size, and the oldest
entries go once the total passes the budget. Values are shared: callers must not change them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class ByteLRU(Generic[T]):
    """Values by key, at most ``budget`` bytes in all (as measured by ``size``), newest kept.

    One value larger than the whole budget is still returned to its caller, just not kept.
    Two threads asking for the same missing key may both build it; the second result wins and
    both are correct, which is simpler than a lock per key for work that takes a second at most.
    """

    def __init__(self, budget: int, size: Callable[[T], int]) -> None:
        self.budget = budget
        self._size = size
        self._items: OrderedDict[Hashable, tuple[T, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found[0]
        value = make()
        size = max(1, int(self._size(value)))
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if size <= self.budget:
                self._items[key] = (value, size)
                self._bytes += size
                while self._bytes > self.budget:
                    _, (_, evicted) = self._items.popitem(last=False)
                    self._bytes -= evicted
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items
