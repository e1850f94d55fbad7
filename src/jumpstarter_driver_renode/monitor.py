"""The monitor client: one command at a time over a byte stream, with timeouts and typed errors.

The transport is any pair of byte streams with `send(bytes)` and `receive(max_bytes)` (Renode's
stdin/stdout in `--console` mode); all parsing lives in `protocol`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from .commands import check_line
from .errors import RenodeCommandError, RenodeExitedError, RenodeTimeoutError, quoted
from .protocol import MonitorStream, Reply, banner_ready, classify_error, take_reply

logger = logging.getLogger(__name__)

MONITOR_PROMPT = "(monitor) "


def selected_machine(prompt: str) -> str | None:
    """The machine a prompt names, or None for `(monitor) `."""
    name = prompt.strip()[1:-1]
    return None if prompt == MONITOR_PROMPT or not name else name


class MonitorClient:
    """Talks to one Renode monitor. Not reusable after a timeout or EOF: the stream state is unknown."""

    def __init__(
        self,
        send: ByteSendStream,
        receive: ByteReceiveStream,
        *,
        timeout: float,
        describe_exit: Callable[[], str] = lambda: "",
        on_eof: Callable[[], Awaitable[object]] | None = None,
        log: logging.Logger = logger,
    ):
        self.log = log  # the target's logger: with many targets, lines must say whose they are
        self._send = send
        self._receive = receive
        self._stream = MonitorStream()
        self._lock = anyio.Lock()
        self.prompt = MONITOR_PROMPT  # the last prompt seen: which machine the monitor has selected
        self.timeout = timeout
        self._describe_exit = describe_exit
        self._on_eof = on_eof  # lets the owner reap the process so the error can say how it ended
        self._broken: str | None = None
        self.banner: str | None = None

    @property
    def broken(self) -> str | None:
        """Why this monitor can no longer be used, or None while it is healthy."""
        return self._broken

    async def wait_ready(self, timeout: float) -> str:
        """Wait for the banner and the first prompt; returns the banner line."""
        async with self._lock:
            with anyio.move_on_after(timeout) as scope:
                while (banner := banner_ready(self._stream)) is None:
                    await self._read_more("start-up")
            if scope.cancelled_caught:
                self._fail(f"no monitor prompt within {timeout:g}s of starting Renode")
                raise RenodeTimeoutError(self._with_exit(self._broken or ""))
            self.banner = banner
            return banner

    async def execute(self, command: str, timeout: float | None = None) -> str:
        """Run one command; return its output or raise RenodeCommandError with Renode's text."""
        reply = await self.request(command, timeout)
        if reply.error is not None:
            kind, reason, detail = classify_error(reply.error)
            raise RenodeCommandError(command, reply.error, kind, detail, reason)
        return reply.output

    async def request(self, command: str, timeout: float | None = None) -> Reply:
        check_line(command)
        limit = self.timeout if timeout is None else timeout
        async with self._lock:
            self._check_usable()
            self.log.debug("monitor <- %s", command)
            try:
                await self._send.send(command.encode() + b"\n")  # exactly one Enter
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                self._fail(f"could not send `{quoted(command)}`: {exc}")
                raise RenodeExitedError(self._with_exit(self._broken or "")) from exc
            with anyio.move_on_after(limit) as scope:
                while (reply := take_reply(self._stream, command)) is None:
                    await self._read_more(command)
            if scope.cancelled_caught:
                self._fail(f"Renode did not answer `{quoted(command)}` within {limit:g}s")
                raise RenodeTimeoutError(self._with_exit(self._broken or ""))
            self.log.debug("monitor -> %r", reply)
            self.prompt = reply.prompt
            return reply

    async def _read_more(self, command: str) -> None:
        try:
            data = await self._receive.receive(65536)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            self._fail(f"Renode closed the monitor while running `{quoted(command)}`")
            if self._on_eof is not None:
                await self._on_eof()
            raise RenodeExitedError(self._with_exit(self._broken or "")) from exc
        self._stream.feed(data)

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise RenodeExitedError(self._with_exit(f"monitor unusable: {self._broken}"))

    def _fail(self, reason: str) -> None:
        if self._broken is None:
            self._broken = reason

    def _with_exit(self, message: str) -> str:
        extra = self._describe_exit()
        return f"{message}; {extra}" if extra else message

    def pending_text(self) -> str:
        """What Renode printed that no reply consumed (for error messages)."""
        return self._stream.as_str()
