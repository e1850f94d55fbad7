"""Shell: AntShell line editor (antshell CommandLine.cs, NavigableTerminalEmulator.cs) and the
terminal writer (antshell CommandInteraction.cs, ICommandInteraction.cs).
"""

import codecs
import os
import time

import logs
from errors import Quit
from faults import crash, env_word, hang_forever
from monitor import ALIASES, BUILTINS
from transport import ConsoleIO, SocketIO
from versions import C_ERR, C_RESET, banner_version


class Writer:
    def __init__(self, plain):
        self.plain = plain
        self.parts = []

    def raw(self, s):
        self.parts.append(s)

    def write(self, s, color=None):
        s = s.replace("\n", "\r\n")
        if color and not self.plain:
            s = "".join(color + ch + C_RESET for ch in s)  # colour is written per character
        self.parts.append(s)

    def writeline(self, s="", color=None):
        self.write(s + "\n\r", color)

    def error(self, s):
        s = s.replace("\r\n", "\n").replace("\n", "\r\n")
        if not s.endswith("\r\n"):
            s += "\r\n"
        self.parts.append(s if self.plain else C_ERR + s + C_RESET)

    def value(self, s):
        self.write(s + "\r\n")  # PrintActionResult / python print: value + \r\r\n

    def take(self):
        s = "".join(self.parts)
        self.parts = []
        return s.encode("utf-8")


class Shell:
    def __init__(self, monitor, out, inp, io, plain):
        self.monitor, self.out, self.inp, self.io, self.plain = monitor, out, inp, io, plain
        self.line = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")("ignore")
        self.hang_on = env_word("STANDIN_HANG_ON")
        self.crash_on = env_word("STANDIN_CRASH_ON")
        self.half_on = env_word("STANDIN_HALF_REPLY_ON")
        self.close_on = env_word("STANDIN_CLOSE_ON")

    def send(self, s):
        self.out.put(s.encode("utf-8") if isinstance(s, str) else s)

    def start_banner(self):
        # NavigableTerminalEmulator.Start -> ResetColors, banner, NewLine x2, prompt
        self.send(("" if self.plain else C_RESET) + banner_version() + "\n\r\n\r" + self.monitor.prompt())

    def run(self):
        while True:
            b = self.inp.get()
            try:
                self.handle_byte(b)
            except Quit:
                return

    def handle_byte(self, b):  # noqa: C901 - one branch per editing key
        if b in (0x0D, 0x0A):
            return self.enter()
        if b == 0x09:
            return self.complete()
        if b == 0x03:  # Ctrl-C abandons the line
            self.line = ""
            return self.send("^C\n\r" + self.monitor.prompt())
        if b == 0x04:  # Ctrl-D on an empty line stops the shell -> Emulator.Exit
            if not self.line:
                self.send("^D")
                raise Quit()
            return
        if b == 0x15:  # Ctrl-U clears the line
            if self.line:
                self.send("\x1b[%dD\x1b[K" % len(self.line))
                self.line = ""
            return
        if b == 0x0B:  # Ctrl-K: cursor is always at the end here
            return
        if b == 0x17:  # Ctrl-W deletes the previous word
            stripped = self.line.rstrip()
            cut = len(stripped) - len(stripped.split(" ")[-1]) if stripped else 0
            n = len(self.line) - cut
            if n:
                self.line = self.line[:cut]
                self.send("\x1b[%dD\x1b[K" % n)
            return
        if b in (0x7F, 0x08):
            if self.line:
                self.line = self.line[:-1]
                self.send("\x1b[1D\x1b[K")
            return
        if b == 0x1B:
            return self.escape()
        if b < 0x20:  # other control characters (Ctrl-R, Ctrl-L, NUL...) are ignored
            return
        ch = self.decoder.decode(bytes([b]))
        for c in ch:
            if c.isprintable() or c == " ":
                self.line += c
                self.send(c)

    def escape(self):
        """Consumes an ESC sequence (CSI/SS3) as an editing key; no effect on the line here."""
        b = self.inp.get()
        if b == ord("["):
            while True:
                b = self.inp.get()
                if 0x40 <= b <= 0x7E:
                    return
        elif b == ord("O"):
            self.inp.get()

    def complete(self):
        words = self.line.split(" ")
        if len(words) != 1:
            return
        prefix = words[0]
        cands = sorted(
            set(
                list(BUILTINS)
                + list(ALIASES)
                + ["emulation", "connector", "Save", "Load"]
                + (["machine", "sysbus"] if self.monitor.current else [])
            )
        )
        matches = [c for c in cands if c.startswith(prefix)]
        if not matches:
            return
        if len(matches) == 1:
            new = matches[0] + " "
        else:
            new = os.path.commonprefix(matches)  # noqa: RUF071 - completion wants a character prefix
            if new == prefix:
                self.send("\n\r" + "  ".join(matches) + "\n\r" + self.monitor.prompt() + self.line)
                return
        back = "\x1b[%dD" % len(self.line) if self.line else ""
        self.send(back + "\x1b[K" + new)
        self.line = new

    def enter(self):
        line, self.line = self.line, ""
        word = line.strip().split(" ")[0] if line.strip() else ""
        if self.crash_on and word == self.crash_on:
            self.out.wait_empty(1.0)  # what was typed is already echoed
            time.sleep(0.05)
            crash("System.NullReferenceException: stand-in crash on '%s'" % word)
        if self.hang_on and word == self.hang_on:
            hang_forever()
        if self.close_on and word == self.close_on:
            self.close_output()
            hang_forever()
        if not line.strip():
            return self.send("\n\r" + self.monitor.prompt())
        # antshell CommandLine.cs: the new line is written before the command runs (the 1.16.1
        # transcript shows `emulation RunFor "0.1"\n\r` long before RunFor's prompt).
        self.send("\n\r")
        w = Writer(self.plain)
        quit_ = False
        try:
            self.monitor.parse(line, w)
        except Quit:
            quit_ = True
        reply = w.take()
        if self.half_on and word == self.half_on:
            full = b"\n\r" + reply + self.monitor.prompt().encode()
            self.send(full[2 : max(2, len(full) // 2)])
            hang_forever()
        if quit_:
            if isinstance(self.io, ConsoleIO) and not self.plain:
                # antshell: terminal.Stop() resets colours when the shell quits, and again through
                # monitor.Quitted -> Shell.Stop (infra src/UI/CommandLineInterface.cs). On a socket the
                # first Stop closed the connection (1.14.0: one reset); --console shows both (1.16.1).
                reply += C_RESET.encode()
            self.send(reply)
            raise Quit()
        self.send(reply + self.monitor.prompt().encode())

    def close_output(self):
        self.out.wait_empty(1.0)
        if isinstance(self.io, SocketIO):
            self.io.close()
        else:
            logs.STDOUT_CLOSED = True  # write_stdout (logs.py) stops writing
            try:
                os.close(1)
            except OSError:
                pass
