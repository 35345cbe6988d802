"""Masking a task's secret values in what it reports, as CI systems mask theirs.

A task's program gets its owner's secrets as environment variables; whatever it
prints, or an agent says, may repeat them. Everything the runner sends out of the
machine (output events, other events, the result with its inline file contents, the
error) passes through one `SecretMask` first, and each exact occurrence of a value
becomes `***`. Streams (stdout, stderr, an agent's text deltas) arrive in pieces, so a
value can be split between two; `StreamMask` holds back a tail that could be the
start of a value until the next piece (or the end) decides.

Only exact occurrences are masked: a value the program encodes, splits or reverses is
not recognized, as in CI. Files the task stores in full are the owner's, not masked.
"""

from __future__ import annotations

MASK = "***"


class SecretMask:
    """Masks the given values (longest first, so one value inside another goes too)."""

    def __init__(self, values: list[str] | tuple[str, ...] = ()) -> None:
        self.values = sorted({v for v in values if v}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def data(self, data):
        """A JSON-like value with every string in it (keys too) masked."""
        if not self.values:
            return data
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            return {self.data(k): self.data(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.data(item) for item in data]
        return data

    def stream(self) -> StreamMask:
        return StreamMask(self)

    def held_tail(self, text: str) -> int:
        """How many characters at the end of `text` could begin a value."""
        longest = 0
        for value in self.values:
            # Candidates start with the value's first character, in its last len - 1.
            at = text.find(value[0], max(len(text) - len(value) + 1, 0))
            while at != -1 and len(text) - at > longest:
                if value.startswith(text[at:]):
                    longest = len(text) - at  # the earliest start is the longest tail
                    break
                at = text.find(value[0], at + 1)
        return longest


class StreamMask:
    """Masks one stream given in pieces: `feed` returns what may go out now."""

    def __init__(self, mask: SecretMask) -> None:
        self.mask = mask
        self._held = ""

    def feed(self, text: str) -> str:
        if not self.mask:
            return text
        text = self.mask.text(self._held + text)
        keep = self.mask.held_tail(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The end of the stream: what was held back (it never became a value)."""
        held, self._held = self._held, ""
        return held
