"""Logging: infra src/Emulator/Main/Logging (ConsoleBackend to stdout, FileBackend, MemoryBackend)."""

import datetime
import os
import sys
import threading

LEVELS = {"NOISY": -1, "DEBUG": 0, "INFO": 1, "WARNING": 2, "ERROR": 3}
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}
STDOUT_LOCK = threading.Lock()


class Logger:
    def __init__(self, to_console):
        self.to_console = to_console
        self.console_level = 1
        self.file = None
        self.file_flush = False
        self.memory = []  # infra MemoryBackend: always present, feeds `lastLog`
        self.lock = threading.Lock()

    def log(self, level, text, source=None):
        lvl = LEVELS[level]
        now = datetime.datetime.now()
        stamp = now.strftime("%H:%M:%S.") + "%04d" % (now.microsecond // 100)
        msg = ("%s: %s" % (source, text)) if source else text
        # infra FormattedTextBackend: continuation lines indented by 4 spaces
        msg = msg.replace("\n", "\n    ")
        line = "%s [%s] %s\n" % (stamp, level, msg)
        with self.lock:
            self.memory.append((level, line.rstrip("\n")))
            del self.memory[:-1000]
            if self.file is not None and lvl >= self.console_level:
                self.file.write(line)
                if self.file_flush:
                    self.file.flush()
        if self.to_console and lvl >= self.console_level:
            write_stdout(line.encode())

    def set_file(self, path, flush):
        # infra src/Emulator/Main/Utilities/FilePath.cs: an existing file is rotated to <path>.N
        if os.path.exists(path):
            n = 1
            while os.path.exists("%s.%d" % (path, n)):
                n += 1
            os.rename(path, "%s.%d" % (path, n))
        with self.lock:
            if self.file:
                self.file.close()
            self.file = open(path, "w")
            self.file_flush = flush

    def close(self):
        with self.lock:
            if self.file:
                self.file.close()
                self.file = None


STDOUT_CLOSED = False


def write_stdout(data):
    global STDOUT_CLOSED
    if STDOUT_CLOSED:
        return
    with STDOUT_LOCK:
        try:
            os.write(1, data) if len(data) < 65536 else sys.stdout.buffer.write(data)
        except OSError:
            STDOUT_CLOSED = True


LOG = Logger(True)
