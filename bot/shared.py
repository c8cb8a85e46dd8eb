"""A process-wide cache of loaded models, shared by every call.

Models load once (at start-up, from the providers' `preload` hooks) and each call gets light
per-call objects that point at the same weights. Loading is thread-safe and happens once per key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from loguru import logger

T = TypeVar("T")

_lock = threading.Lock()
_loaded: dict[Hashable, Any] = {}
_key_locks: dict[Hashable, threading.Lock] = {}


def shared(key: Hashable, loader: Callable[[], T]) -> T:
    """Return the object cached under `key`, calling `loader` once to create it."""
    try:
        return _loaded[key]
    except KeyError:
        pass
    with _lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        if key not in _loaded:
            started = time.perf_counter()
            _loaded[key] = loader()
            logger.info(
                f"loaded {key[0] if isinstance(key, tuple) else key} "
                f"in {time.perf_counter() - started:.2f}s"
            )
        return _loaded[key]


def loaded_keys() -> list[Hashable]:
    """Keys of everything loaded so far (for readiness and tests)."""
    return list(_loaded)
