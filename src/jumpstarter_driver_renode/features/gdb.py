"""GDB: a GDB server per machine that sets `gdb_port`, reachable only through the `gdb` child.

Renode's GDB server binds every interface, so Renode runs in a private network namespace and a relay
connects a Unix socket in the process's directory to the server's port there (netns.py).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from jumpstarter.driver import Driver, exportstream
from jumpstarter_driver_network.driver import NetworkInterface

from .. import commands
from ..spec import BoardSpec, MachineSpec, ProcessFiles
from .base import Board, Feature, Root


def socket_of(spec: BoardSpec, files: ProcessFiles, machine: str) -> Path | None:
    """The Unix socket of a machine's GDB server, if it has one."""
    index = next((i for i, m in spec.gdb.items() if m.name == machine), None)
    return None if index is None else files.gdb_socket(index)


class Gdb(Feature):
    @staticmethod
    def children(root: Root, machine: MachineSpec, spec: BoardSpec) -> dict[str, Driver]:
        return {} if machine.gdb_port is None else {"gdb": RenodeGdb(parent=root, machine=machine.name)}

    @staticmethod
    def relays(spec: BoardSpec, files: ProcessFiles) -> list[tuple[Path, int]]:
        return [(files.gdb_socket(i), machine.gdb_port) for i, machine in spec.gdb.items()]

    async def finish(self, board: Board) -> None:
        await self._start(board)

    async def after_load(self, board: Board) -> None:
        await self._start(board)  # `Machine.gdbStubs` is rebuilt empty by `Load`

    async def _start(self, board: Board) -> None:
        for machine in board.spec.gdb.values():
            await board.session.on(machine.name, commands.start_gdb_server(machine.gdb_port))


@dataclass(kw_only=True)
class RenodeGdb(NetworkInterface, Driver):
    """Renode's GDB server, reachable only through Jumpstarter (`j board gdb forward-tcp 3333`)."""

    parent: Root
    machine: str

    @exportstream
    @asynccontextmanager
    async def connect(self):
        board = self.parent.target.serving("connect to GDB")
        socket_path = socket_of(board.spec, board.files, self.machine)
        assert socket_path is not None  # the child exists only for machines with a gdb_port
        async with await anyio.connect_unix(str(socket_path)) as stream:
            yield stream
