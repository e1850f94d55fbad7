"""PTY UART terminals (emulation CreateUartPtyTerminal)."""

import os
import select
import threading
import time
import tty

from errors import CommandError


class PtyTerminal:
    """renode src/Renode/Backends/Terminals/UartPtyTerminal.cs: raw PTY + symlink."""

    def __init__(self, name, link, force):
        self.name, self.link, self.force = name, link, force
        self.master = self.slave = None
        self.uart = None  # (machine, peripheral)
        self.closed = False
        # Measured on 1.16.1: a terminal restored by `Load` passes no bytes either way until its
        # UART is connected again (`connector Disconnect` + `connector Connect`).
        self.dead = False
        self.handlers = []  # CharReceived: each byte passed from the PTY to the UART (pyapi.py)

    def open(self):
        if os.path.lexists(self.link):
            if not self.force:
                raise CommandError("File `%s' already exists. Use forceCreate to overwrite it." % self.link)
            os.unlink(self.link)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # PtyUnixStream: cfmakeraw
        # The slave stays open here so unread output stays in the kernel PTY buffer.
        try:
            os.symlink(os.ttyname(self.slave), self.link)
        except OSError as e:
            self.dispose(unlink=False)
            raise CommandError("There was an error when when creating a symlink `%s': %s" % (self.link, e.strerror))  # noqa: B904 - the monitor prints this text instead
        threading.Thread(target=self.reader, daemon=True).start()

    def reader(self):
        while not self.closed:
            try:
                r, _, _ = select.select([self.master], [], [], 0.2)
                if not r:
                    continue
                data = os.read(self.master, 4096)
            except (OSError, ValueError, TypeError):
                return
            if self.uart is not None and not self.dead:
                self.uart[0].uart_receive(self.uart[1], data, self)

    def write(self, data):
        """Writes to the PTY master; unread bytes stay in the kernel buffer."""
        if self.dead:
            return
        mv = memoryview(data)
        deadline = time.monotonic() + 2.0
        while mv and not self.closed and time.monotonic() < deadline:
            try:
                _, w, _ = select.select([], [self.master], [], 0.1)
                if w:
                    n = os.write(self.master, mv)
                    mv = mv[n:]
            except (OSError, ValueError, TypeError):
                return

    def dispose(self, unlink=True):
        self.closed = True
        for fd in (self.master, self.slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self.slave = None
        if unlink:
            try:
                os.unlink(self.link)  # UartPtyTerminal.Dispose: symlink.Delete()
            except OSError:
                pass
