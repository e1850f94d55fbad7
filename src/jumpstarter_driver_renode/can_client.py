"""Client side of a CAN hub: `jumpstarter_driver_can`'s CanClient (a python-can bus), plus a CLI with
`send ID#DATA` and a candump-style `dump`."""

from __future__ import annotations

import re
from dataclasses import dataclass

import can
import click
from jumpstarter.client.decorators import driver_click_group
from jumpstarter_driver_can.client import CanClient

_FRAME_RE = re.compile(r"([0-9A-Fa-f]{1,8})#(R|[0-9A-Fa-f.]*)")


def parse_frame(text: str) -> can.Message:
    """cansend's notation: `123#DEADBEEF` (3 hex digits: standard id), `1ABCDEF0#00` (8: extended),
    `123#R` (a remote frame); dots between bytes are allowed (`123#DE.AD`)."""
    m = _FRAME_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"expected ID#DATA like 123#DEADBEEF or 1ABCDEF0#00 or 123#R, not {text!r}")
    ident, payload = m[1], m[2]
    if len(ident) not in (3, 8):
        raise ValueError(f"the id has 3 hex digits (standard) or 8 (extended), as in cansend: {ident!r}")
    remote = payload.upper() == "R"
    digits = "" if remote else payload.replace(".", "")
    if len(digits) % 2:
        raise ValueError(f"data must be whole bytes (pairs of hex digits): {payload!r}")
    data = bytes.fromhex(digits)
    return can.Message(arbitration_id=int(ident, 16), is_extended_id=len(ident) == 8, is_remote_frame=remote, data=data)


def format_frame(msg: can.Message) -> str:
    """candump -ta style: `(virtual seconds) hub ID#DATA`."""
    ident = f"{msg.arbitration_id:08X}" if msg.is_extended_id else f"{msg.arbitration_id:03X}"
    payload = "R" if msg.is_remote_frame else bytes(msg.data).hex().upper()
    return f"({msg.timestamp:.6f}) {msg.channel} {ident}#{payload}"


@dataclass(kw_only=True)
class RenodeCanClient(CanClient):
    """A CAN hub of a Renode target: a python-can bus whose timestamps and timeouts are virtual seconds."""

    def recv(self, timeout: float | None = None) -> can.Message | None:
        """The next frame that passes the filters, waiting at most `timeout` virtual seconds (None: until
        one comes). One wait inside Renode: python-can's own loop would add host time to the timeout."""
        while True:
            msg, _ = self._recv_internal(timeout)  # filtered inside Renode
            if msg is not None or timeout is not None:
                return msg

    def cli(self):
        @driver_click_group(self)
        def base():
            """CAN hub of the emulated boards (python-can bus; virtual time)"""

        @base.command()
        @click.argument("frame")
        def send(frame):
            """Send one frame, cansend style: 123#DEADBEEF, 1ABCDEF0#00, 123#R"""
            try:
                msg = parse_frame(frame)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="FRAME") from None
            self.send(msg)

        @base.command()
        @click.option("--count", "-n", type=click.IntRange(min=1), default=None, help="Stop after N frames")
        @click.option(
            "--timeout",
            "-t",
            type=click.FloatRange(min=0),
            default=None,
            help="Stop when no frame came for this many virtual seconds (default: never)",
        )
        def dump(count, timeout):
            """Print the frames on the hub, candump style, with their virtual times"""
            seen = 0
            while count is None or seen < count:
                msg = self.recv(timeout)
                if msg is None:
                    break
                click.echo(format_frame(msg))
                seen += 1

        return base
