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
        """Take the next token; returns True once a stop string has appeared (what follows is not written). Text
        that could be the start of a stop string ("object" of a stop string "object,") waits for the next tokens."""
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
        else:
            text = text[:len(text) - self._held_back(text)]
        self._show(text)
        return self.stopped

    def finish(self) -> None:
        """Generation ended without a stop string: write what was held back."""
        if not self.stopped and self.ids:
            text = self.decode(self.ids)
            self._show(text[:-1] if text.endswith("\ufffd") else text)

    def _held_back(self, text: str) -> int:
        """Characters at the end of ``text`` that begin some stop string."""
        return max((n for s in self.stops for n in range(min(len(s) - 1, len(text)), 0, -1)
                    if text.endswith(s[:n])), default=0)

    def _show(self, text: str) -> None:
        if text.startswith(self.shown) and len(text) > len(self.shown):
            self.write(text[len(self.shown):])
            self.shown = text
