"""CAN hubs the host can talk on: each `kind: can` hub is a child of the target that speaks
`jumpstarter-driver-can`'s interface (its `CanClient` is a python-can bus), so python-can, can-isotp and
udsoncan work on it unchanged.

The host's node lives inside Renode (`inside_renode/can.py`): it records every frame the hub carries with
the sender's exact virtual time, and hands the host's frames to every peripheral on the hub the way the
hub does (each machine takes it at its next synced state). A receive waits in virtual time: on a paused
board it runs the emulation until a frame passes the bus's filters, then pauses there. Frames travel as
hex and numbers: nothing a client sends becomes monitor syntax or code.

Renode 1.16's STMCAN reports filter match index 0 for every frame; the node corrects what a read of
CAN_RDTxR returns on each STMCAN wired to a hub (see the helper).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID, uuid4

import can
from jumpstarter.driver import Driver, export
from jumpstarter_driver_can.common import CanMessage
from pydantic import validate_call

from ..bounded import BoundedErrors
from ..commands import MAX_VIRTUAL_SECONDS, check_number, check_peripheral
from ..errors import ErrorKind, RenodeCommandError, RenodeError, RenodeStartError
from ..session import wait_limit
from ..spec import BoardSpec, HubSpec
from .base import Board, Feature, Root

STANDARD_ID_MAX = 0x7FF
EXTENDED_ID_MAX = 0x1FFFFFFF
QUEUE = 16384  # frames the node keeps for the host (inside_renode/can.py QUEUE_LIMIT)
POLL_SLICE = 1.0  # virtual seconds one receive without a timeout waits before python-can asks again
MAX_FILTERS = 64
MAX_PERIODIC_FRAMES = 256
MAX_PERIODIC_TASKS = 64  # per bus
MIN_PERIOD = 100e-6  # virtual seconds: one Renode quantum (a classical frame takes 47 us or more at 1 Mbit/s)


def can_hubs(spec: BoardSpec) -> tuple[HubSpec, ...]:
    return tuple(hub for hub in spec.hubs if hub.kind == "can")


# -- monitor lines (pure) -------------------------------------------------------------------------------


def frame_parts(msg: can.Message | CanMessage) -> tuple[str, str, str]:
    """(id hex, flags, data hex) of a classical frame, refused if it is anything else."""
    if msg.is_fd:
        raise ValueError("CAN FD frames are not supported: Renode's host node sends classical CAN frames")
    if msg.is_error_frame:
        raise ValueError("error frames cannot be sent: Renode's CAN model has no error signalling")
    ident = int(msg.arbitration_id)
    top = EXTENDED_ID_MAX if msg.is_extended_id else STANDARD_ID_MAX
    if not 0 <= ident <= top:
        kind = "extended (29-bit)" if msg.is_extended_id else "standard (11-bit)"
        raise ValueError(f"arbitration id 0x{ident:X} does not fit a {kind} id")
    data = bytes(msg.data or b"")
    if len(data) > 8:
        raise ValueError(f"a classical CAN frame carries at most 8 data bytes, not {len(data)}")
    if msg.is_remote_frame:
        # A remote frame has a length but no data; Renode's frame has no DLC of its own (STMCAN takes the
        # data's length): the length travels as that many zero bytes.
        dlc = msg.dlc if msg.dlc is not None else len(data)
        if not 0 <= dlc <= 8:
            raise ValueError(f"a remote frame's DLC is 0..8, not {dlc}")
        data = bytes(dlc)
    flags = ("e" if msg.is_extended_id else "") + ("r" if msg.is_remote_frame else "") or "-"
    return f"{ident:x}", flags, data.hex() or "-"


def attach(hub: str, members: list[tuple[str, str]]) -> str:
    wired = ",".join(f"{machine}:{peripheral}" for machine, peripheral in members)
    return f'jumpstarter_can_attach "{hub}" "{wired}"'


def send(hub: str, msg: can.Message | CanMessage) -> str:
    return "jumpstarter_can_send " + " ".join(f'"{part}"' for part in (hub, *frame_parts(msg)))


def _whole(value) -> int | None:
    """An integer from the client (JSON brings ints as floats), or None for anything else (str, bool, 1.5)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return None
    return int(value)


def check_filters(filters) -> str:
    """python-can's filter list (`can_id`, `can_mask`, optional `extended`) as `id:mask:ext,...`, or `-`."""
    if not filters:
        return "-"
    if not isinstance(filters, (list, tuple)) or len(filters) > MAX_FILTERS:
        raise ValueError(f"filters must be a list of at most {MAX_FILTERS} dicts with can_id and can_mask")
    items = []
    for item in filters:
        ident = _whole(item.get("can_id")) if isinstance(item, dict) else None
        mask = _whole(item.get("can_mask")) if isinstance(item, dict) else None
        if ident is None or mask is None:
            raise ValueError(f"a filter needs integer can_id and can_mask: {item!r}")
        if not (0 <= ident <= EXTENDED_ID_MAX and 0 <= mask <= EXTENDED_ID_MAX):
            raise ValueError(f"filter can_id and can_mask must be 0..0x1FFFFFFF: {item!r}")
        extended = item.get("extended")
        if extended is not None and not isinstance(extended, bool):
            raise ValueError(f"a filter's `extended` is true or false: {item!r}")
        kind = "-" if extended is None else ("1" if extended else "0")
        items.append(f"{ident:x}:{mask:x}:{kind}")
    return ",".join(items)


def recv(hub: str, filters: str, timeout: float, host_timeout: float) -> str:
    return f'jumpstarter_can_recv "{hub}" "{filters}" "{round(timeout * 1e9)}" "{round(host_timeout * 1000)}"'


def periodic(hub: str, task: str, msgs: Sequence[CanMessage], period: float, duration: float | None) -> str:
    items = ",".join("/".join(frame_parts(m)) for m in msgs)
    end = -1 if duration is None else round(duration * 1e9)
    return f'jumpstarter_can_periodic "{hub}" "{task}" "{items}" "{round(period * 1e9)}" "{end}"'


def stop(hub: str, task: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{32}", task):
        raise ValueError(f"not a periodic send's id: {task!r}")
    return f'jumpstarter_can_stop "{hub}" "{task}"'


def fmi_fix(peripheral: str) -> str:
    return f'jumpstarter_can_fmi_fix "{check_peripheral(peripheral)}"'


@dataclass(frozen=True)
class Received:
    outcome: str  # frame, timeout, host-timeout
    now: float  # virtual seconds when the receive returned
    dropped: int  # frames the node let go of because nobody read them (its queue is bounded)
    message: can.Message | None = None


_RECV_RE = re.compile(
    r"jumpstarter-can (frame|timeout|host-timeout) (\d+) (\d+)(?: (\d+) ([0-9a-f]+) (-|e|r|er) (-|[0-9a-f]+))?"
)


def parse_recv(output: str, channel: str) -> Received:
    m = _RECV_RE.search(output)
    if m is None:
        raise RenodeError(f"unexpected reply from Renode's CAN helper: {output!r}")
    message = None
    if m[1] == "frame":
        data = b"" if m[7] == "-" else bytes.fromhex(m[7])
        remote = "r" in m[6]
        message = can.Message(
            timestamp=int(m[4]) / 1e9,
            arbitration_id=int(m[5], 16),
            is_extended_id="e" in m[6],
            is_remote_frame=remote,
            data=b"" if remote else data,  # a remote frame's "data" is only its length (STMCAN)
            dlc=len(data),
            channel=channel,
            is_rx=True,
        )
    return Received(m[1], int(m[2]) / 1e9, int(m[3]), message)


# -- the feature ------------------------------------------------------------------------------------------


class CanBus(Feature):
    """A host node on every CAN hub, and the filter match index of each STMCAN on one, as silicon gives it."""

    helpers = ("can.py",)

    @staticmethod
    def board_children(root: Root, spec: BoardSpec) -> dict[str, Driver]:
        return {hub.name: RenodeCanBus(parent=root, hub=hub) for hub in can_hubs(spec)}

    async def prepare(self, board: Board) -> None:
        await self._attach(board)

    async def _attach(self, board: Board) -> None:
        session = board.session
        for hub in can_hubs(board.spec):
            members = [(session.names[machine], peripheral) for machine, peripheral in hub.connect]
            try:
                await session.execute(attach(hub.name, members))
                for machine, peripheral in hub.connect:
                    await session.on(machine, fmi_fix(peripheral))
            except RenodeCommandError as exc:
                if exc.kind is not ErrorKind.HELPER:
                    raise
                raise RenodeStartError(f"CAN hub `{hub.name}`: {exc.detail}") from exc

    async def park(self, board: Board, replacing: bool) -> None:
        if can_hubs(board.spec):
            await board.session.execute("jumpstarter_can_unhook")  # `Save` fails on a Python handler

    async def unpark(self, board: Board, replaced: bool) -> None:
        if can_hubs(board.spec) and not replaced:
            await board.session.execute("jumpstarter_can_hook")

    async def after_load(self, board: Board) -> None:
        await self._attach(board)  # the snapshot's hub and peripherals: a new node, no frames of the old timeline


# -- the hub's child ---------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RenodeCanBus(BoundedErrors, Driver):
    """A CAN hub of the target, as `jumpstarter-driver-can`'s `Can` driver: a python-can bus for the host.

    Timestamps and timeouts are virtual seconds. Periodic sends run in virtual time inside Renode.
    """

    parent: Root
    hub: HubSpec

    def __post_init__(self):
        super().__post_init__()
        self._filters = "-"  # what _apply_filters set, as the helper takes it
        self._listen_only = False
        self._tasks: set[str] = set()  # periodic sends started through this bus

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_renode.can_client.RenodeCanClient"

    @property
    def _channel(self) -> str:
        return self.hub.name

    async def _command(self, line: str, action: str, waits: bool = False) -> str:
        parent = self.parent
        async with parent.target.instance(action) as board:
            if waits:
                limit = wait_limit(parent.command_timeout, parent.expect_host_timeout)
                return await board.session.on_wait(self.hub.connect[0][0], line, limit)
            return await board.session.on(self.hub.connect[0][0], line, parent.command_timeout)

    @export
    @validate_call(validate_return=True)
    async def _recv_internal(self, timeout: float | None) -> tuple[CanMessage | None, bool]:
        """The next frame on the hub that passes the filters, waiting at most `timeout` virtual seconds
        (None: a slice of POLL_SLICE; python-can asks again)."""
        seconds = POLL_SLICE if timeout is None else check_number(timeout, "timeout", 0, MAX_VIRTUAL_SECONDS)
        line = recv(self.hub.name, self._filters, seconds, self.parent.expect_host_timeout)
        reply = parse_recv(await self._command(line, "receive a CAN frame", waits=True), self._channel)
        if reply.dropped:
            self.logger.warning(
                "%s: %d frames were dropped unread (the node keeps the newest %d)", self._channel, reply.dropped, QUEUE
            )
        if reply.outcome == "host-timeout":
            raise TimeoutError(
                f"the exporter's host time limit (expect_host_timeout) passed at virtual time {reply.now:.6f} s "
                "while waiting for a CAN frame: the emulation runs slower than that allows"
            )
        if reply.message is None:
            return None, True
        return CanMessage.construct(reply.message), True

    @export
    @validate_call(validate_return=True)
    async def send(self, msg: CanMessage, timeout: float | None = None) -> None:
        """Put one frame on the hub: every peripheral on it takes it at its machine's next synced state."""
        if self._listen_only:
            raise ValueError(f"CAN bus {self._channel} is listen-only (state PASSIVE): set state ACTIVE to send")
        await self._command(send(self.hub.name, msg), "send a CAN frame")

    @export
    @validate_call(validate_return=True)
    async def _send_periodic_internal(
        self,
        msgs: Sequence[CanMessage] | CanMessage,
        period: float,
        duration: float | None = None,
        autostart: bool = True,
        modifier_callback: None = None,
    ) -> UUID:
        """Send `msgs` in turn every `period` virtual seconds (for `duration`), from Renode's clock."""
        msgs = [msgs] if isinstance(msgs, CanMessage) else list(msgs)
        if not 0 < len(msgs) <= MAX_PERIODIC_FRAMES:
            raise ValueError(f"a periodic send takes 1 to {MAX_PERIODIC_FRAMES} frames")
        if self._listen_only:
            raise ValueError(f"CAN bus {self._channel} is listen-only (state PASSIVE): set state ACTIVE to send")
        if len(self._tasks) >= MAX_PERIODIC_TASKS:
            raise ValueError(f"at most {MAX_PERIODIC_TASKS} periodic sends per bus: stop one first")
        period = check_number(period, "period (virtual seconds)", MIN_PERIOD, MAX_VIRTUAL_SECONDS)
        if duration is not None:
            duration = check_number(duration, "duration (virtual seconds)", 0, MAX_VIRTUAL_SECONDS)
        if not autostart:
            raise NotImplementedError("periodic sends start at once here (autostart=False is not supported)")
        task = uuid4()
        await self._command(periodic(self.hub.name, task.hex, msgs, period, duration), "send CAN frames periodically")
        self._tasks.add(task.hex)
        return task

    @export
    @validate_call(validate_return=True)
    async def _start_task(self, uuid: UUID) -> None:
        if uuid.hex not in self._tasks:
            raise ValueError(f"no periodic send {uuid} (stopped ones cannot start again: send_periodic anew)")

    @export
    @validate_call(validate_return=True)
    async def _stop_task(self, uuid: UUID) -> None:
        """Stop a periodic send; stopping one that ended or was stopped already does nothing (python-can's
        `shutdown` stops every task the client started)."""
        if uuid.hex in self._tasks:
            self._tasks.discard(uuid.hex)
            await self._stop(uuid.hex)

    async def _stop(self, task: str) -> None:
        if self.parent.target.state.value != "on":
            return  # a board that is off sends nothing
        await self._command(stop(self.hub.name, task), "stop a periodic CAN send")

    @export
    @validate_call(validate_return=True)
    def state(self, value: can.BusState | None = None) -> can.BusState | None:
        """ACTIVE, or PASSIVE (listen only: sends are refused); ERROR is not modelled by Renode."""
        if value is None:
            return can.BusState.PASSIVE if self._listen_only else can.BusState.ACTIVE
        if value is can.BusState.ERROR:
            raise ValueError("Renode's CAN model has no error state: a bus can be ACTIVE or PASSIVE")
        self._listen_only = value is can.BusState.PASSIVE
        return None

    @export
    @validate_call(validate_return=True)
    def protocol(self) -> can.CanProtocol:
        return can.CanProtocol.CAN_20

    @export
    @validate_call(validate_return=True)
    def channel_info(self) -> str:
        wired = ", ".join(f"{m}:{p}" for m, p in self.hub.connect)
        return f"Renode CAN hub {self.hub.name} ({wired})"

    @export
    def _apply_filters(self, filters) -> None:
        """Frames that pass none of the filters are not received (checked inside Renode, in virtual time)."""
        self._filters = check_filters(filters)

    @export
    @validate_call(validate_return=True)
    def flush_tx_buffer(self) -> None:
        """Nothing to flush: a send hands its frame to Renode before it returns."""

    @export
    @validate_call(validate_return=True)
    async def shutdown(self) -> None:
        """Stop this bus's periodic sends."""
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            await self._stop(task)
