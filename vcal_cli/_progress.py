"""The progress protocol of every long loop: a callable shaped like `rich.progress.track`.

Library code is quiet by default (`quiet`); the CLI passes a real `track` bound to stderr.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Track = Callable[..., Iterable[Any]]


def quiet(it: Iterable[Any], **_: Any) -> Iterable[Any]:
    """The default progress callable: no output."""
    return it
