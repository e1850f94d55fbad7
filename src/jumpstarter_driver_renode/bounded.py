"""Errors a client receives are bounded: gRPC carries an error's text in metadata, which has an 8 KiB limit
(past it the client sees `RESOURCE_EXHAUSTED: Stream removed` instead of the error). Renode's own texts
(a long command echoed back, a .NET traceback, a log tail) can cross it, so every call of our drivers sends
at most `MAX_ERROR_BYTES` of an error's text, saying how much was cut; the whole text goes to the
exporter's log.
"""

from __future__ import annotations

import logging

MAX_ERROR_BYTES = 4096  # UTF-8 bytes of an error's text sent to a client
_HEAD = 2800  # of those, from the start (what failed); the rest from the end (Renode's last words)

logger = logging.getLogger(__name__)


EXPORTER_LOG = "the whole text is in the exporter's log; Renode's own log: `log`"


def bound(text: str, limit: int = MAX_ERROR_BYTES, whole: str = EXPORTER_LOG) -> str:
    """`text` if it fits in `limit` UTF-8 bytes, else its start and end with a note of what was cut and
    where the `whole` text is."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    head = data[: _HEAD * limit // MAX_ERROR_BYTES].decode("utf-8", "ignore")
    tail_budget = limit - len(head.encode()) - 200  # room for the note
    tail = data[len(data) - tail_budget :].decode("utf-8", "ignore")
    cut = len(text) - len(head) - len(tail)
    note = f"\n[... {cut} characters cut (the error had {len(text)}): {whole} ...]\n"
    return head + note + tail


class _BoundedContext:
    """A gRPC servicer context whose `abort` sends a bounded text (and logs the whole one)."""

    def __init__(self, context, log: logging.Logger):
        self._context = context
        self._log = log

    async def abort(self, code, details: str = ""):
        short = bound(details)
        if short != details:
            self._log.warning(
                "an error sent to the client was cut to %d bytes; whole text:\n%s", MAX_ERROR_BYTES, details
            )
        return await self._context.abort(code, short)

    def __getattr__(self, name):
        return getattr(self._context, name)


class BoundedErrors:
    """Mixin for a Jumpstarter driver: the errors of its calls reach the client bounded."""

    async def DriverCall(self, request, context):
        return await super().DriverCall(request, _BoundedContext(context, getattr(self, "logger", logger)))

    async def StreamingDriverCall(self, request, context):
        async for response in super().StreamingDriverCall(
            request, _BoundedContext(context, getattr(self, "logger", logger))
        ):
            yield response
