"""UART channels on real PTYs: backlog, hand-over to consoles, and fd reuse between targets."""

from __future__ import annotations

import asyncio
import os

import anyio
import pytest

from jumpstarter_driver_renode.uart import UartChannel


class FakeRenodePty:
    """The Renode side of a UART PTY: we write on the master, the channel opens the slave's path."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)

    def close(self):
        for fd in (self.master, self.slave):
            os.close(fd)


async def eventually(predicate, timeout: float = 5.0) -> None:
    """Poll a condition the channel's reader task makes true (it has no event to wait on)."""
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await anyio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def receive_until(stream, wanted: bytes) -> bytes:
    got = b""
    with anyio.fail_after(5):
        while wanted not in got:
            got += await stream.receive()
    return got


@pytest.mark.anyio
async def test_output_before_attach_goes_to_the_first_console():
    pty = FakeRenodePty()
    channel = UartChannel("console")
    try:
        channel.attach(pty.path)
        os.write(pty.master, b"boot banner\r\n")
        await eventually(lambda: b"banner" in channel.unread())
        async with channel.subscribe() as stream:
            assert b"boot banner" in await receive_until(stream, b"banner")
            await stream.send(b"typed\r")
            with anyio.fail_after(5):
                await anyio.wait_readable(pty.master)
            assert os.read(pty.master, 100) == b"typed\r"
    finally:
        channel.detach()
        pty.close()


@pytest.mark.anyio
async def test_backlog_is_bounded_and_keeps_the_newest_bytes():
    pty = FakeRenodePty()
    channel = UartChannel("console", backlog_limit=1000)
    try:
        channel.attach(pty.path)
        for i in range(50):
            os.write(pty.master, f"line {i:03d}\n".encode() * 10)
        await eventually(lambda: b"line 049\n" * 10 in channel.unread())
        assert len(channel.unread()) == 1000
        assert channel.unread().endswith(b"line 049\n")
    finally:
        channel.detach()
        pty.close()


@pytest.mark.anyio
async def test_a_detached_channel_does_not_unregister_the_next_owner_of_its_fd_number():
    """Power off one target, power on another: the kernel hands the new PTY the same fd number."""
    first, second = FakeRenodePty(), FakeRenodePty()
    a, b = UartChannel("a"), UartChannel("b")
    try:
        a.attach(first.path)
        old = a._attachment
        a.detach()
        b.attach(second.path)
        assert b._attachment.fd == old.fd  # the number was reused
        await asyncio.wait([old.task], timeout=5)  # the cancelled pump of `a` runs its cleanup now
        assert old.task.done()
        async with b.subscribe() as stream:
            os.write(second.master, b"still delivered\n")
            assert b"still delivered" in await receive_until(stream, b"delivered")
    finally:
        b.detach()
        first.close()
        second.close()


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_bytes_a_console_had_not_read_go_to_the_next_console():
    pty = FakeRenodePty()
    channel = UartChannel("console")
    try:
        channel.attach(pty.path)
        async with channel.subscribe() as first:
            os.write(pty.master, b"first part\n")
            assert b"first part" in await receive_until(first, b"first part")
            os.write(pty.master, b"unread by the first console\n")
            await eventually(lambda: channel._subscribers[0].receive.statistics().current_buffer_used > 0)
            await first.aclose()  # as Jumpstarter does when the client goes away
        async with channel.subscribe() as second:
            assert b"unread by the first console" in await receive_until(second, b"first console")
    finally:
        channel.detach()
        pty.close()


@pytest.mark.anyio
async def test_drain_gives_up_on_a_console_that_does_not_read():
    """A restore drains the UARTs under the target's lock: a console that stopped reading (its stream
    full, the reader held back) must not keep the restore, and every later call, waiting forever."""
    pty = FakeRenodePty()
    channel = UartChannel("console")
    try:
        channel.attach(pty.path)
        async with channel.subscribe() as idle:
            for n in range(300):  # more writes than the console's stream holds
                os.write(pty.master, b"line %d\n" % n)
                await anyio.sleep(0.002)  # one delivery each
            await eventually(lambda: idle.sub.send.statistics().current_buffer_used == 256)
            with anyio.fail_after(3):
                await channel.drain(limit=0.5)
    finally:
        channel.detach()
        pty.close()
