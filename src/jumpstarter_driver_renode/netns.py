"""Running Renode in a private network namespace, with its GDB server reachable only through a socket file.

Renode's GDB server listens on every interface, like its monitor socket. To offer GDB without
exposing it to the lab network, Renode runs inside a new user + network namespace (`unshare`),
whose only interface is its own loopback. A small relay forked inside that namespace accepts
connections on a Unix socket in the target's private directory and connects each to the GDB port
on the namespace's loopback; the driver's `gdb` child connects to that Unix socket, so the only
way in is through Jumpstarter (`j board gdb forward-tcp 3333`).

This module is also the program that runs inside the namespace:
    python -m jumpstarter_driver_renode.netns --gdb PATH PORT [--gdb PATH PORT ...] -- renode ARGS...
It brings the loopback up, forks the relay, and execs Renode (keeping its PID, so the driver's
process handling does not change).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import struct
import sys
import threading
import time

from .errors import RenodeStartError

GDB_PORT_IN_NAMESPACE = 3333  # the namespace is private: any port is free there
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def isolated_argv(argv: list[str], relays: list[tuple[str, int]]) -> list[str]:
    """`argv` wrapped to run in a private user + network namespace with a GDB relay per (socket, port)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RenodeStartError(
            "GDB needs `unshare` (util-linux) to keep Renode's GDB server off the network; install it or remove gdb_port"
        )
    return [
        unshare,
        "--user",
        "--map-root-user",
        "--net",
        "--",
        sys.executable,
        "-m",
        "jumpstarter_driver_renode.netns",
        *[arg for socket_path, port in relays for arg in ("--gdb", socket_path, str(port))],
        "--",
        *argv,
    ]


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _connect_gdb(port: int, timeout: float = 10.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:  # the GDB server starts only once the machine is set up
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _relay(path: str, port: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # die with Renode (our parent after exec)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    while True:
        client, _ = listener.accept()
        try:
            server = _connect_gdb(port)
        except OSError:
            client.close()
            continue
        server.settimeout(None)
        threading.Thread(target=_pipe, args=(client, server), daemon=True).start()
        threading.Thread(target=_pipe, args=(server, client), daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gdb", nargs=2, action="append", required=True, metavar=("SOCKET", "PORT"))
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    _loopback_up()
    parent = os.getpid()
    for socket_path, port in args.gdb:  # one relay per machine's GDB server
        if os.fork() == 0:  # single-threaded here, so forking is safe
            try:
                if os.getppid() == parent:
                    _relay(socket_path, int(port))
            finally:
                os._exit(0)
    # Renode replaces this process: same PID, same pipes, and the parent-death signal set before exec.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
