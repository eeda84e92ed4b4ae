"""Reading a response body within bounds: bytes are counted as they arrive, then split into
lines and into NDJSON records or SSE events, so no line, event or body can grow past the
byte budget, and an HTTP error body is read only as far as its first few KB."""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx

ERROR_BODY_LIMIT = 4096
"""Bytes of an HTTP error body read for the error message; the rest is never read."""

_NEWLINE = re.compile(r"\r\n|\r|\n")


class ResponseTooLargeError(Exception):
    """The body went past the byte budget; reading stopped there."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"response body larger than {limit} bytes")
        self.limit = limit


class ByteBudget:
    """Counts the body's bytes (after any Content-Encoding is undone, so a compressed body
    cannot slip past) and fails once they exceed `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise ResponseTooLargeError(self.limit)


class LineSplitter:
    """Splits decoded text into lines at `\\n`, `\\r\\n` or `\\r`, across chunk boundaries.
    A line's pieces are joined only once it ends, so a long line costs no repeated copies."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._after_cr = False

    def feed(self, text: str) -> list[str]:
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the second half of a "\r\n" split between chunks
            self._after_cr = False
        if not text:
            return []
        self._after_cr = text.endswith("\r")
        parts = _NEWLINE.split(text)
        if len(parts) == 1:
            self._pending.append(text)
            return []
        lines = ["".join([*self._pending, parts[0]]), *parts[1:-1]]
        self._pending = [parts[-1]] if parts[-1] else []
        return lines

    def flush(self) -> list[str]:
        line = "".join(self._pending)
        self._pending = []
        return [line] if line else []


class NDJSONFrames:
    """One record per non-blank line."""

    def line(self, line: str) -> str | None:
        return line if line.strip() else None


class SSEFrames:
    """Server-sent events: `data:` lines gather until a blank line ends the event; an event
    without data is skipped, as the spec says. Only the data matters to the providers."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def line(self, line: str) -> str | None:
        if not line:
            data, self._data = self._data, []
            return "\n".join(data) if data else None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        return None


def event_stream_content_type(response: httpx.Response) -> str | None:
    """The response's content type if it is not an event stream, else None."""
    content_type = response.headers.get("content-type", "").partition(";")[0].strip()
    return None if "text/event-stream" in content_type else content_type


async def records(
    response: httpx.Response, *, framing: NDJSONFrames | SSEFrames, budget: ByteBudget
) -> AsyncIterator[str]:
    """The body's records (NDJSON lines or SSE event data), charging every byte to `budget`."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines = LineSplitter()
    async with aclosing(response.aiter_bytes()) as chunks:
        async for chunk in chunks:
            budget.take(len(chunk))
            for line in lines.feed(decoder.decode(chunk)):
                if (record := framing.line(line)) is not None:
                    yield record
    for line in [*lines.feed(decoder.decode(b"", final=True)), *lines.flush()]:
        if (record := framing.line(line)) is not None:
            yield record


async def error_body_head(
    response: httpx.Response, *, limit: int = ERROR_BODY_LIMIT
) -> tuple[str, bool]:
    """At most `limit` bytes of an error body, decoded, and whether more followed (unread)."""
    head = bytearray()
    cut = False
    async with aclosing(response.aiter_bytes()) as chunks:
        async for chunk in chunks:
            head += chunk
            if len(head) > limit:
                cut = True
                break
    return bytes(head[:limit]).decode("utf-8", errors="replace"), cut
