"""Text as it is generated: token ids in, new characters out as soon as they are whole, stopping at stop strings.

Both ``edgebit generate`` paths (host and device) print through it, so a stop string or a token that completes a
multi-byte character behaves the same wherever the tokens come from.
"""

from __future__ import annotations

from typing import Callable


class TextStream:
    def __init__(self, decode: Callable[[list[int]], str], write: Callable[[str], None], stops: tuple[str, ...] = ()):
        self.decode, self.write, self.stops = decode, write, tuple(s for s in stops if s)
        self.ids: list[int] = []
        self.shown = ""  # the text written so far
        self.stopped = False

    def add(self, token: int) -> bool:
        """Take the next token; returns True once a stop string has appeared (what follows is not written)."""
        if self.stopped:
            return True
        self.ids.append(token)
        text = self.decode(self.ids)
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            text = text[:cut]
        elif text.endswith("\ufffd"):
            return False  # half a multi-byte character: wait for the rest
        if text.startswith(self.shown):
            self.write(text[len(self.shown):])
            self.shown = text
        return self.stopped
