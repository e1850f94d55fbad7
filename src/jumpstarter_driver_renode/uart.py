"""UART channels: read a Renode UART PTY from power-on and hand its bytes to consoles.

A PTY keeps nothing for a reader that is not there yet, and pyserial flushes on open, so a console
that attaches after the firmware printed its banner would miss it. A `UartChannel` reads the PTY for
the whole time the target is on; bytes that arrive while no console is attached go to a bounded
backlog that the next console receives first. The channel outlives power cycles, like a serial cable:
consoles stay attached while the board is off and see the next boot.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import termios
import tty
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import ObjectStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

logger = logging.getLogger(__name__)

DEFAULT_BACKLOG = 1024 * 1024  # bytes kept for the next console; older bytes are dropped first
HISTORY = 64 * 1024  # the last bytes printed, whoever read them: for failure reports
_READ_SIZE = 65536
DRAIN_LIMIT = 2.0  # seconds a restore waits for the consoles to take the last output
_BATCH = 65536  # one delivery (one gRPC message) carries up to this much: a PTY read gives ~4 KiB


@dataclass(eq=False)
class _Subscriber:
    send: MemoryObjectSendStream[bytes]
    receive: MemoryObjectReceiveStream[bytes]


@dataclass(eq=False)
class _Attachment:
    """One opened PTY. The fd is unregistered from the event loop *before* it is closed: once closed,
    its number can be reused by another target's PTY, whose reader a late removal would delete."""

    fd: int
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task | None = None
    closed: bool = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.task is not None:
            self.task.cancel()
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop or self.loop.is_closed() or not self.loop.is_running():
            self._release()
        else:  # another thread (a lifecycle close): let the loop unregister, then close, in order
            self.loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        if not self.loop.is_closed():
            self.loop.remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)


@dataclass(eq=False)
class UartChannel:
    name: str
    backlog_limit: int = DEFAULT_BACKLOG
    _attachment: _Attachment | None = None
    _backlog: bytearray = field(default_factory=bytearray)
    _dropped: int = 0
    _subscribers: list[_Subscriber] = field(default_factory=list)
    _history: bytearray = field(default_factory=bytearray)
    written: int = 0  # bytes written to the current PTY (Renode's expect helper counts them arriving)
    _reading: asyncio.Lock = field(default_factory=asyncio.Lock)  # one read-and-deliver at a time, in order
    log: logging.Logger = field(default=logger, repr=False)  # the target's logger, set by its Target

    # -- the Renode side -------------------------------------------------------------------------

    def attach(self, pty_link: Path, fresh: bool = True) -> None:
        """Start reading the PTY that Renode created at `pty_link`.

        `fresh` (a power-on) clears the backlog so a console never matches the previous boot's output;
        a snapshot restore keeps it: bytes the board printed are never taken back, like on a serial line.
        """
        self.detach()
        fd = os.open(pty_link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tty.setraw(fd, termios.TCSANOW)  # no echo or line editing on our end of the PTY
        except termios.error:
            pass
        attachment = _Attachment(fd, asyncio.get_running_loop())
        self._attachment = attachment
        self.written = 0
        self._history.clear()  # what the board printed since power-on or the last restore
        if fresh:
            self._backlog.clear()
            self._dropped = 0
        # A task rather than a task group: it must outlive the call that powered the target on.
        attachment.task = attachment.loop.create_task(self._run_pump(attachment), name=f"uart-{self.name}")

    def detach(self) -> None:
        """Stop reading (power off); attached consoles stay attached."""
        attachment, self._attachment = self._attachment, None
        if attachment is not None:
            attachment.close()

    def recent(self, lines: int) -> str:
        """The last `lines` lines printed since power-on or the last restore (of the last 64 KiB)."""
        text = self._history.decode("utf-8", "replace").replace("\r\n", "\n")
        return "\n".join(text.splitlines()[-lines:])

    def unread(self) -> bytes:
        """The bytes kept for the next console: printed while no console was attached, not yet delivered."""
        return bytes(self._backlog)

    @property
    def attached(self) -> bool:
        return self._attachment is not None

    async def _run_pump(self, attachment: _Attachment) -> None:
        fd = attachment.fd
        ready = asyncio.Event()
        # Registered once for the whole run: re-registering per read costs more than the read.
        attachment.loop.add_reader(fd, ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                async with self._reading:
                    data, closed = self._read_available(fd)
                    if data:
                        await self._deliver(data)
                if closed:
                    return
        finally:
            if not attachment.closed:  # ended by itself (Renode closed the PTY): the fd is still ours
                attachment.loop.remove_reader(fd)

    async def drain(self, limit: float = DRAIN_LIMIT) -> None:
        """Deliver everything the PTY holds now, in order with the reader: Renode is paused and its
        run (or process) is about to be replaced, so these are the last bytes it printed. Bounded: a
        console that does not read holds the reader back, and the caller waits for nobody."""
        attachment = self._attachment
        if attachment is None:
            return
        with anyio.move_on_after(limit) as scope:
            async with self._reading:
                while not attachment.closed:
                    data, closed = self._read_available(attachment.fd)
                    if data:
                        await self._deliver(data)
                    if closed or not data:
                        return
        if scope.cancelled_caught:
            self.log.warning("UART %s: a console is not reading; output not yet delivered may be lost", self.name)

    def _read_available(self, fd: int) -> tuple[bytes, bool]:
        """Everything the PTY holds right now (up to _BATCH), and whether Renode closed its side."""
        chunks: list[bytes] = []
        size = 0
        while size < _BATCH:
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO: Renode closed its side (quit or crash)
                    self.log.warning("UART %s: read failed: %s", self.name, exc)
                return b"".join(chunks), True
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), False  # more left? the reader is level-triggered and fires again

    async def _deliver(self, data: bytes) -> None:
        self._history += data
        if len(self._history) > HISTORY:
            del self._history[: len(self._history) - HISTORY]
        delivered = False
        for sub in list(self._subscribers):
            try:
                await sub.send.send(data)  # back-pressure: a slow console slows the reader, loses nothing
                delivered = True
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # that console just left
        if not delivered:
            self._keep(data)

    def _keep(self, data: bytes) -> None:
        self._backlog += data
        excess = len(self._backlog) - self.backlog_limit
        if excess > 0:
            del self._backlog[:excess]
            self._dropped += excess
            self.log.warning("UART %s: backlog full, dropped %d oldest bytes", self.name, excess)

    async def write(self, data: bytes) -> None:
        fd = self._attachment.fd if self._attachment is not None else None
        if fd is None:
            self.log.debug("UART %s: target is off, dropping %d input bytes", self.name, len(data))
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
                self.written += written
                view = view[written:]
            except BlockingIOError:
                await anyio.wait_writable(fd)

    # -- the console side ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[ObjectStream[bytes]]:
        """A byte stream for one console: the backlog first, then live output; writes go to the UART."""
        send, receive = anyio.create_memory_object_stream[bytes](256)
        sub = _Subscriber(send, receive)
        if self._backlog:
            send.send_nowait(bytes(self._backlog))
            self._backlog.clear()
        self._subscribers.append(sub)
        try:
            yield _ConsoleStream(self, sub)
        finally:
            self._release(sub)

    def _release(self, sub: _Subscriber) -> None:
        """Detach a console; whatever it had not read yet goes back to the backlog for the next one."""
        if sub not in self._subscribers:
            return
        self._subscribers.remove(sub)
        unread = bytearray()
        with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            while True:
                unread += sub.receive.receive_nowait()
        if unread:
            self._backlog[:0] = unread
        sub.send.close()
        sub.receive.close()


@dataclass(eq=False)
class _ConsoleStream(ObjectStream[bytes]):
    channel: UartChannel
    sub: _Subscriber

    async def receive(self) -> bytes:
        return await self.sub.receive.receive()

    async def send(self, item: bytes) -> None:
        await self.channel.write(item)

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        # Jumpstarter closes the stream before leaving subscribe(): recover the unread bytes here.
        self.channel._release(self.sub)
