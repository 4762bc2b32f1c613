"""The third outcome of every parser in :mod:`monoport.wire`: "need more bytes".

A pure parser fed a prefix answers with a result, a refusal, or
:data:`NEED_MORE` while the bytes so far could still become a valid input
(like h11's ``NEED_DATA``). One sentinel for all of them, so a caller's
"read until the parser decides" loop is written once against one type.
"""

from __future__ import annotations

from typing import Final


class NeedMore:
    """The type of :data:`NEED_MORE`; one instance, compared with ``is``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE"


#: Returned when the bytes so far are too short to decide.
NEED_MORE: Final = NeedMore()

__all__ = ["NEED_MORE", "NeedMore"]
