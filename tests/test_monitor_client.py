"""MonitorClient on its own, against a scripted fake Renode over in-memory streams.

The fake answers with the real bytes of Renode 1.16.1 in `--console` mode (tests/transcripts/console-color.txt),
written in pieces as small as one byte, so these tests see what the driver sees from a real Renode: the echo,
`\\n\\r` line ends, coloured prompts and red errors. Every wait is bounded.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import pytest
from transcripts import chunks, exchanges

from jumpstarter_driver_renode.errors import (
    RenodeCommandError,
    RenodeExitedError,
    RenodeTimeoutError,
    UnsafeInputError,
)
from jumpstarter_driver_renode.monitor import MonitorClient, selected_machine

TRANSCRIPT = "console-color.txt"
BANNER = chunks(TRANSCRIPT)[0]  # ESC[0mRenode, version 1.16.1 (...)\n\r\n\r ESC[31;1m(monitor) ESC[0m
BANNER_LINE = "Renode, version 1.16.1 (-202611301012)"
RESET = b"\x1b[0m"  # every prompt ends with it: it may arrive after the client already has its reply


def _answers() -> dict[str, bytes]:
    """Each command's complete answer, as Renode sent it (the first time the command ran)."""
    answers: dict[str, bytes] = {}
    for sent, answer in exchanges(TRANSCRIPT):
        if sent.endswith(b"\n") and not sent.endswith(b"\r\n") and answer.endswith(b") " + RESET):
            answers.setdefault(sent[:-1].decode(), answer)
    # `Load` of a snapshot replaces the machine: the prompt goes back to `(monitor) `. The transcript has this
    # answer inside one read with others (the monitor was blocked by RunFor); cut it out as it arrived.
    merged = next(a for s, a in exchanges(TRANSCRIPT) if s == b"Load @<tmp>/snap.save\n" and a)
    start = merged.index(b"Load @<tmp>/snap.save\n\r")
    answers["Load @<tmp>/snap.save"] = merged[start : merged.index(b"Clear\n", start)]
    return answers


ANSWERS = _answers()
# Real partial answer: RunFor echoes, then blocks the monitor for seconds before the next prompt.
RUNFOR = 'emulation RunFor "0.1"'
RUNFOR_ECHO = dict((s, a) for s, a in exchanges(TRANSCRIPT))[(RUNFOR + "\n").encode()]


class FakeRenode:
    """Renode's side of the monitor pipes, in memory.

    The client uses `send` and `receive` (the same object is both of its streams); each piece the fake
    writes is one `receive()` for the client, so a reply written byte by byte is read byte by byte.
    """

    def __init__(self) -> None:
        self._out, self._out_reader = anyio.create_memory_object_stream[bytes](math.inf)  # Renode -> client
        self._in_writer, self._in = anyio.create_memory_object_stream[bytes](math.inf)  # client -> Renode
        self.sent = bytearray()  # every byte the client handed to the transport
        self.commands: list[str] = []  # the lines Renode read, in order
        self._line = bytearray()

    # -- the client's ends --

    async def send(self, data: bytes) -> None:
        await self._in_writer.send(bytes(data))
        self.sent += data

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self._out_reader.receive()
        assert len(data) <= max_bytes
        return data

    # -- Renode's side --

    async def write(self, data: bytes, piece: int = 1) -> None:
        for i in range(0, len(data), piece):
            await self._out.send(data[i : i + piece])
            await anyio.lowlevel.checkpoint()  # let the client take it before the next piece

    async def answer(self, data: bytes, piece: int = 1) -> None:
        """Write a reply; until its closing prompt is out, no other command may arrive (one at a time)."""
        head, tail = (data[: -len(RESET)], RESET) if data.endswith(RESET) else (data, b"")
        for i in range(0, len(head), piece):
            assert not self.pending_input(), f"a second command arrived while answering `{self.commands[-1]}`"
            await self.write(head[i : i + piece], piece)
        await self.write(tail, piece)

    async def read_command(self) -> str:
        while b"\n" not in self._line:
            self._line += await self._in.receive()
        line, _, rest = self._line.partition(b"\n")
        self._line = bytearray(rest)
        self.commands.append(line.decode())
        return self.commands[-1]

    def pending_input(self) -> bool:
        return bool(self._line) or self._in.statistics().current_buffer_used > 0

    def exit(self) -> None:
        """Renode closes its stdout (it quit or crashed): the client reads EOF."""
        self._out.close()

    def close_stdin(self) -> None:
        """Renode's stdin is gone: the client's next send fails."""
        self._in.close()


async def replay(fake: FakeRenode, piece: int = 1) -> None:
    """A Renode that prints its banner, then answers every command as the real one did."""
    await fake.write(BANNER, piece)
    while True:
        command = await fake.read_command()
        assert command in ANSWERS, f"the fake has no recorded answer for {command!r}"
        await fake.answer(ANSWERS[command], piece)


def banner_then(after: Callable[[FakeRenode], Awaitable[None]]) -> Callable[[FakeRenode], Awaitable[None]]:
    async def script(fake: FakeRenode) -> None:
        await fake.write(BANNER)
        await after(fake)

    return script


@asynccontextmanager
async def monitor(
    script: Callable[[FakeRenode], Awaitable[None]] | None, timeout: float = 5.0, **kwargs
) -> AsyncIterator[tuple[FakeRenode, MonitorClient]]:
    """A client talking to a fake Renode that runs `script` (None: the test drives the fake itself)."""
    fake = FakeRenode()
    client = MonitorClient(fake, fake, timeout=timeout, **kwargs)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            if script is not None:
                tg.start_soon(script, fake)
            yield fake, client
            tg.cancel_scope.cancel()


@pytest.fixture
def anyio_backend():
    return "asyncio"


# -- start-up ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wait_ready_returns_the_banner_of_real_renode_only_once_the_prompt_is_complete():
    async with monitor(None) as (fake, client):
        result: list[str] = []

        async def wait() -> None:
            result.append(await client.wait_ready(5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            cut = BANNER.index(b"(monitor) ") + len(b"(monitor)")  # all but the prompt's last space
            await fake.write(BANNER[:cut])
            await anyio.sleep(0.05)
            assert result == [], "wait_ready returned before the prompt was complete"
            await fake.write(BANNER[cut:])
        assert result == [BANNER_LINE]
        assert client.banner == BANNER_LINE
        assert client.prompt == "(monitor) "
        assert fake.sent == b"", "waiting for the banner must not type anything"


@pytest.mark.anyio
async def test_wait_ready_times_out_when_no_prompt_comes_and_the_monitor_is_then_unusable():
    async def log_line_only(fake: FakeRenode) -> None:
        await fake.write(b"\x1b[0mRenode, version 1.16.1 (-202611301012)\n\r\n\r")  # banner, never the prompt
        await anyio.sleep_forever()

    async with monitor(log_line_only, timeout=30, describe_exit=lambda: "Renode is still running") as (fake, client):
        with pytest.raises(RenodeTimeoutError, match=r"no monitor prompt within 0\.2s of starting Renode"):
            await client.wait_ready(0.2)
        assert client.broken is not None
        with anyio.fail_after(1), pytest.raises(RenodeExitedError, match="monitor unusable"):
            await client.execute("version")
        assert fake.sent == b""


@pytest.mark.anyio
async def test_wait_ready_reports_renode_exiting_during_start_up():
    async def crash(fake: FakeRenode) -> None:
        await fake.write(BANNER[:20])
        fake.exit()

    async with monitor(crash, describe_exit=lambda: "Renode exited with code 134") as (_, client):
        with pytest.raises(RenodeExitedError, match=r"closed the monitor while running `start-up`.*code 134"):
            await client.wait_ready(5)


# -- commands ----------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("piece", [1, 5, 4096], ids=["1-byte", "5-byte", "whole"])
async def test_output_and_selected_machine_follow_each_reply(piece):
    async with monitor(lambda fake: replay(fake, piece)) as (fake, client):
        assert await client.wait_ready(5) == BANNER_LINE
        assert await client.execute("version") == BANNER_LINE
        assert selected_machine(client.prompt) is None

        assert await client.execute('mach create "m0"') == ""
        assert client.prompt == "(m0) "
        assert selected_machine(client.prompt) == "m0"

        assert await client.execute("start") == "Starting emulation..."
        assert await client.execute("currentTime") == (
            "Current virtual time: 00:00:00.056500000\nCurrent real time: 00:00:04.134145100"
        )
        assert client.prompt == "(m0) "

        assert await client.execute("Load @<tmp>/snap.save") == ""  # a snapshot load drops the selection
        assert client.prompt == "(monitor) "
        assert selected_machine(client.prompt) is None

        commands = ["version", 'mach create "m0"', "start", "currentTime", "Load @<tmp>/snap.save"]
        assert fake.commands == commands
        assert bytes(fake.sent) == b"".join(c.encode() + b"\n" for c in commands), "exactly one `\\n` per command"
        assert client.broken is None


@pytest.mark.anyio
async def test_red_errors_raise_with_renodes_text_and_the_command_and_the_monitor_stays_usable():
    async with monitor(replay) as (_, client):
        await client.wait_ready(5)
        with pytest.raises(RenodeCommandError) as bogus:
            await client.execute("bogus")
        assert bogus.value.command == "bogus"
        assert bogus.value.renode_message == "No such command or device: bogus"
        assert str(bogus.value) == "Renode rejected `bogus`: No such command or device: bogus"

        await client.execute('mach create "m0"')
        command = "machine LoadPlatformDescription @/nonexistent.repl"
        with pytest.raises(RenodeCommandError) as missing:
            await client.execute(command)
        assert missing.value.command == command
        assert missing.value.renode_message == (
            f"There was an error executing command '{command}'\nCould not find file '/nonexistent.repl'."
        )

        # A wrong call: a method listing (green types, *bold* red default values) then two red error lines.
        command = "connector Connect sysbus.usart9 term"
        with pytest.raises(RenodeCommandError) as wrong:
            await client.execute(command)
        assert wrong.value.renode_message == (
            f"There was an error executing command '{command}'\nParameters did not match the signature"
        )

        reply = await client.request("bogus")  # request() hands the error back instead of raising
        assert not reply.ok
        assert reply.error == "No such command or device: bogus"

        assert await client.execute("start") == "Starting emulation..."
        assert client.broken is None
        assert client.prompt == "(m0) "


@pytest.mark.anyio
@pytest.mark.parametrize(
    "command",
    ["version\r", "version\r\n", "help\tx", "start\x03", "quit\x04", "\x1b[A", "\x15start", "x\x7f", "x\x85", "", "  "],
)
async def test_control_characters_and_empty_commands_are_refused_before_anything_is_sent(command):
    async with monitor(replay) as (fake, client):
        await client.wait_ready(5)
        with pytest.raises(UnsafeInputError):
            await client.execute(command)
        assert fake.sent == b""
        assert client.broken is None
        assert await client.execute("version") == BANNER_LINE  # still in step with Renode
        assert fake.sent == b"version\n"


# -- failures ----------------------------------------------------------------------------------------


async def assert_unusable_without_sending(fake: FakeRenode, client: MonitorClient, *details: str) -> None:
    """Every later call fails at once (the client's own timeout is long) and types nothing."""
    sent = bytes(fake.sent)
    with anyio.fail_after(1):
        for call in (client.execute, client.request):
            with pytest.raises(RenodeExitedError, match="monitor unusable") as failed:
                await call("version")
            for detail in details:
                assert detail in str(failed.value)
    assert fake.sent == sent


@pytest.mark.anyio
async def test_no_answer_times_out_then_every_later_call_fails_at_once_without_sending():
    async def hang(fake: FakeRenode) -> None:
        await fake.read_command()
        await anyio.sleep_forever()

    still = "Renode is still running"
    async with monitor(banner_then(hang), timeout=30, describe_exit=lambda: still) as (fake, client):
        await client.wait_ready(5)
        with anyio.fail_after(2), pytest.raises(RenodeTimeoutError) as timed_out:
            await client.execute("version", timeout=0.2)
        assert str(timed_out.value) == f"Renode did not answer `version` within 0.2s; {still}"
        assert client.broken == "Renode did not answer `version` within 0.2s"
        assert fake.sent == b"version\n"
        await assert_unusable_without_sending(fake, client, "did not answer `version`", still)


@pytest.mark.anyio
async def test_a_partial_reply_then_silence_times_out():
    """Real bytes: RunFor echoes at once, then blocks the monitor for seconds before its prompt."""

    async def echo_only(fake: FakeRenode) -> None:
        assert await fake.read_command() == RUNFOR
        await fake.write(RUNFOR_ECHO)
        await anyio.sleep_forever()

    async with monitor(banner_then(echo_only), timeout=0.3) as (fake, client):
        await client.wait_ready(5)
        with anyio.fail_after(2), pytest.raises(RenodeTimeoutError, match=r"did not answer `emulation RunFor"):
            await client.execute(RUNFOR)
        assert client.broken is not None
        await assert_unusable_without_sending(fake, client)


@pytest.mark.anyio
async def test_eof_mid_reply_awaits_on_eof_and_says_how_renode_ended():
    reaped: list[bool] = []

    async def on_eof() -> None:
        await anyio.sleep(0.01)  # a real owner awaits the process here; a forgotten await never gets past it
        reaped.append(True)

    def describe_exit() -> str:
        return "Renode exited with code 3; stderr:\n  boom" if reaped else "Renode is still running"

    async def crash(fake: FakeRenode) -> None:
        answer = ANSWERS["currentTime"]
        assert await fake.read_command() == "currentTime"
        await fake.write(answer[: len(answer) // 2])
        fake.exit()

    async with monitor(banner_then(crash), on_eof=on_eof, describe_exit=describe_exit) as (fake, client):
        await client.wait_ready(5)
        with pytest.raises(RenodeExitedError) as exited:
            await client.execute("currentTime")
        assert reaped == [True]
        message = str(exited.value)
        assert message.startswith("Renode closed the monitor while running `currentTime`")
        assert "Renode exited with code 3" in message
        assert "boom" in message
        assert client.broken is not None
        await assert_unusable_without_sending(fake, client, "exited with code 3")
    assert reaped == [True], "on_eof runs once"


@pytest.mark.anyio
async def test_a_failed_send_raises_exited_and_breaks_the_monitor():
    async with monitor(
        banner_then(lambda fake: anyio.sleep_forever()), describe_exit=lambda: "Renode exited with code 1"
    ) as (
        fake,
        client,
    ):
        await client.wait_ready(5)
        fake.close_stdin()  # the memory stream's send now raises anyio.BrokenResourceError
        with anyio.fail_after(1), pytest.raises(RenodeExitedError) as exited:
            await client.execute("version")
        assert str(exited.value).startswith("could not send `version`")
        assert str(exited.value).endswith("; Renode exited with code 1")
        assert isinstance(exited.value.__cause__, anyio.BrokenResourceError)
        assert client.broken is not None
        await assert_unusable_without_sending(fake, client, "could not send `version`")


@pytest.mark.anyio
async def test_concurrent_commands_are_serialized_and_each_gets_its_own_reply():
    """The fake fails if a second command arrives before it has finished answering the first."""
    expected = {
        "version": BANNER_LINE,
        "start": "Starting emulation...",
        "pause": "Pausing emulation...",
        "machine Reset": "",
        "currentTime": "Current virtual time: 00:00:00.056500000\nCurrent real time: 00:00:04.134145100",
        "bogus": RenodeCommandError,
        "machine LoadPlatformDescription @/nonexistent.repl": RenodeCommandError,
    }
    results: dict[str, object] = {}

    async def run(command: str) -> None:
        try:
            results[command] = await client.execute(command)
        except RenodeCommandError as exc:
            assert exc.command == command
            results[command] = RenodeCommandError

    async with monitor(replay) as (fake, client):
        await client.wait_ready(5)
        async with anyio.create_task_group() as tg:
            for command in expected:
                tg.start_soon(run, command)
        assert results == expected
        assert sorted(fake.commands) == sorted(expected)
        assert bytes(fake.sent) == b"".join(c.encode() + b"\n" for c in fake.commands)
        assert client.broken is None
