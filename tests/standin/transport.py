"""Monitor I/O: socket (infra SocketServerProvider.cs) and console (ConsoleIOSource)."""

import os
import random
import socket
import threading
import time

from faults import CHUNK_MAX, crash
from logs import write_stdout
from versions import IS_116, SWALLOW9

IAC_BYTES = b"\xff\xfd\x00\xff\xfb\x01\xff\xfb\x03\xff\xfc\x22"
if IS_116:
    IAC_BYTES = b"\xff\xfd\x00\xff\xfd\x1f\xff\xfb\x01\xff\xfb\x03\xff\xfc\x22"


class OutputQueue:
    """Bytes written by the monitor; nothing is dropped while no client is attached."""

    def __init__(self):
        self.buf = bytearray()
        self.cond = threading.Condition()
        self.closed = False

    def put(self, data):
        with self.cond:
            self.buf += data
            self.cond.notify_all()

    def take(self, timeout=0.2):
        """Returns a small random chunk (1..CHUNK_MAX bytes) or b'' on timeout."""
        with self.cond:
            if not self.buf:
                self.cond.wait(timeout)
            if not self.buf:
                return b""
            n = random.randint(1, CHUNK_MAX)
            chunk = bytes(self.buf[:n])
            del self.buf[:n]
            if not self.buf:
                self.cond.notify_all()
            return chunk

    def wait_empty(self, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.buf and time.monotonic() < deadline:
                self.cond.wait(0.05)


class InputQueue:
    def __init__(self):
        self.buf = bytearray()
        self.cond = threading.Condition()

    def put(self, data):
        with self.cond:
            self.buf += data
            self.cond.notify_all()

    def get(self):
        with self.cond:
            while not self.buf:
                self.cond.wait()
            b = self.buf[0]
            del self.buf[0]
            return b


class SocketIO:
    """One client at a time; 12 (1.16: 15) IAC bytes on accept; 1.13-1.15 swallow 9 bytes."""

    def __init__(self, port, out, inp):
        self.out, self.inp = out, inp
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # bind failure -> crash like Renode (facts: `Fatal error:` on stderr, no "Monitor available")
        try:
            self.server.bind(("0.0.0.0", port))
        except OSError as e:
            crash(
                "Antmicro.Renode.Exceptions.RecoverableException: Unable to create '0.0.0.0:%d' "
                "socket:[AddressAlreadyInUse] %s" % (port, e.strerror),
                1,
            )
        self.server.listen(1)
        self.client = None
        threading.Thread(target=self.listener, daemon=True).start()

    def listener(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.serve(conn)

    def serve(self, conn):
        self.client = conn
        try:
            conn.sendall(IAC_BYTES)
            if SWALLOW9:
                # "we expect 9 bytes as a result of sending config bytes" (I14 line 183)
                got = 0
                while got < 9:
                    d = conn.recv(9 - got)
                    if not d:
                        raise OSError("closed")
                    got += len(d)
        except OSError:
            conn.close()
            self.client = None
            return
        done = threading.Event()
        reader = threading.Thread(target=self.reader, args=(conn, done), daemon=True)
        reader.start()
        while not done.is_set():
            chunk = self.out.take()
            if not chunk:
                continue
            if IS_116:
                chunk = chunk.replace(b"\xff", b"\xff\xff")
            try:
                conn.sendall(chunk)
            except OSError:
                break
        reader.join(1)
        try:
            conn.close()
        except OSError:
            pass
        self.client = None

    def reader(self, conn, done):
        state = 0  # 1.16: skip IAC <cmd> <opt> triples, IAC IAC -> 0xFF
        try:
            while True:
                d = conn.recv(1)
                if not d:
                    break
                b = d[0]
                if IS_116:
                    if state == 0 and b == 0xFF:
                        state = 1
                        continue
                    if state == 1:
                        if b == 0xFF:
                            state = 0
                            self.inp.put(b"\xff")
                        else:
                            state = 2
                        continue
                    if state == 2:
                        state = 0
                        continue
                self.inp.put(d)
        except OSError:
            pass
        done.set()

    def close(self):
        try:
            self.server.close()
        except OSError:
            pass
        if self.client:
            try:
                self.client.shutdown(socket.SHUT_RDWR)
                self.client.close()
            except OSError:
                pass


class ConsoleIO:
    """--console: monitor on stdin/stdout; stdin read byte by byte (Console.Read)."""

    def __init__(self, out, inp):
        self.out, self.inp = out, inp
        threading.Thread(target=self.reader, daemon=True).start()
        threading.Thread(target=self.writer, daemon=True).start()

    def reader(self):
        while True:
            try:
                d = os.read(0, 1)
            except OSError:
                return
            if not d:
                return
            self.inp.put(d)

    def writer(self):
        while True:
            chunk = self.out.take()
            if chunk:
                write_stdout(chunk)

    def close(self):
        pass
