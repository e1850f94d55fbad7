"""Emulation model: firmware behaviour, machines, GDB servers, the emulation and its snapshot state."""

import re
import socket
import threading
import time

from cpu import LINE_MAX, PROJECT_BOARDS, TICK_NS, Cpu, Memory
from errors import CommandError
from faults import arm_crash_after, crash_after_start
from logs import LOG
from terminals import PtyTerminal
from tokens import NS


class Firmware:
    """Deterministic UART behaviour of a loaded image, driven by virtual time.

    `project` = (board, banner) for the project's own test firmware (firmware/), which the stand-in
    plays exactly: the banner on its board's console UART, `echo: <line>`, `ticks on`/`ticks off`
    (`tick <n>` every 100 ms of virtual time). Any other image plays the generic stand-in firmware.
    """

    def __init__(self, sha, loader, arch_ok=True, entry=0, project=None):
        self.sha, self.loader, self.arch_ok, self.entry = sha, loader, arch_ok, entry
        self.project = project
        self.reset()

    def reset(self):
        self.booted = False
        self.runs = False  # whether the CPU started inside this image (decided at boot)
        self.boot_ns = None
        self.ticks = 0
        self.ticks_on_ns = None
        self.linebuf = {}

    def state(self):
        return {
            "sha": self.sha,
            "loader": self.loader,
            "arch_ok": self.arch_ok,
            "entry": self.entry,
            "project": self.project,
            "runs": self.runs,
            "ticks_on_ns": self.ticks_on_ns,
            "booted": self.booted,
            "boot_ns": self.boot_ns,
            "ticks": self.ticks,
            "linebuf": {k: v.decode("latin-1") for k, v in self.linebuf.items()},
        }

    @classmethod
    def from_state(cls, st):
        fw = cls(st["sha"], st["loader"], st["arch_ok"], st["entry"], tuple(st["project"]) if st["project"] else None)
        fw.booted, fw.boot_ns, fw.ticks = st["booted"], st["boot_ns"], st["ticks"]
        fw.runs, fw.ticks_on_ns = st["runs"], st["ticks_on_ns"]
        fw.linebuf = {k: v.encode("latin-1") for k, v in st["linebuf"].items()}
        return fw


class Machine:
    def __init__(self, emu, name):
        self.emu, self.name = emu, name
        self.periphs = {}
        self.cpu = None
        self.platform = None
        self.fw = None
        self.gdb = {}
        self.lock = threading.RLock()
        self.pending_rx = []  # (peripheral, bytes) received while paused
        self.core = None  # Cpu: where the CPU starts (stand-in cpu.py)
        self.memory = Memory()
        self.elf_lowest = None  # lowest address of the last ELF: Renode guesses a Cortex-M's VTOR from it

    # -- firmware ----------------------------------------------------------------------------
    def uarts(self):
        """UART peripherals connected to a terminal, in platform order."""
        res = []
        for t in self.emu.terminals.values():
            if t.uart and t.uart[0] is self:
                res.append((t.uart[1], t))
        order = list(self.periphs)
        return sorted(res, key=lambda x: order.index(x[0]) if x[0] in order else 0)

    def emit(self, text):
        for _, term in self.uarts():
            term.write(text.encode())

    def emit_to(self, periph, text):
        for name, term in self.uarts():
            if name == periph:
                term.write(text.encode())

    def project_console(self):
        """The UART the project firmware prints on, if this machine has it (else its output goes nowhere)."""
        _, periph, typ = PROJECT_BOARDS[self.fw.project[0]]
        return periph if self.periphs.get(periph, ("",))[0] == typ else None

    def boot(self, now_ns):
        """The CPU starts: does it run the loaded image? Then the firmware's boot output."""
        fw = self.fw
        fw.booted = True
        fw.boot_ns = now_ns if fw.boot_ns is None else fw.boot_ns
        inside = self.core.start(self.memory, self.elf_lowest) if self.core else True
        if inside and not fw.arch_ok:
            # A CPU executing code of another architecture aborts (TranslationCPU.cs format).
            LOG.log("ERROR", "CPU abort [PC=0x%X]: Undefined instruction." % fw.entry, self.src("cpu"))
        fw.runs = inside and fw.arch_ok
        if not fw.runs:
            return
        if fw.project:
            console = self.project_console()
            if console:
                self.emit_to(console, fw.project[1] + "\r\n")
            return
        for name, _ in self.uarts():
            self.emit_to(name, "Booting stand-in firmware sha256=%s loader=%s uart=%s\r\n" % (fw.sha, fw.loader, name))

    def run_until(self, now_ns):
        """Advances the firmware to virtual time now_ns (machine running)."""
        with self.lock:
            fw = self.fw
            if fw is None:
                return
            if not fw.booted:
                self.boot(now_ns)
            if not fw.runs:
                self.pending_rx = []
                return
            for periph, data in self.pending_rx:
                self.process_rx(periph, data, now_ns)
            self.pending_rx = []
            if fw.project:
                console = self.project_console()
                while fw.ticks_on_ns is not None and fw.ticks_on_ns + (fw.ticks + 1) * TICK_NS <= now_ns:
                    fw.ticks += 1
                    if console:
                        self.emit_to(console, "tick %d\r\n" % fw.ticks)
                return
            while fw.boot_ns + (fw.ticks + 1) * NS <= now_ns:
                fw.ticks += 1
                self.emit("tick %d\r\n" % fw.ticks)

    def project_rx(self, periph, data, now_ns):
        """The project firmware: a line buffer of LINE_MAX characters; CR or LF ends a non-empty line."""
        fw = self.fw
        if periph != self.project_console():
            return
        buf = fw.linebuf.get(periph, b"")
        for byte in data:
            if byte in b"\r\n":
                line, buf = buf, b""
                if not line:
                    continue
                self.emit_to(periph, "echo: %s\r\n" % line.decode("latin-1"))
                if line == b"ticks on":
                    fw.ticks_on_ns, fw.ticks = now_ns, 0
                elif line == b"ticks off":
                    fw.ticks_on_ns = None
            elif len(buf) < LINE_MAX:
                buf += bytes([byte])
        fw.linebuf[periph] = buf

    def process_rx(self, periph, data, now_ns):
        fw = self.fw
        if fw.project:
            return self.project_rx(periph, data, now_ns)
        buf = fw.linebuf.get(periph, b"") + data
        while True:
            m = re.search(rb"[\r\n]", buf)
            if not m:
                break
            line, buf = buf[: m.start()], buf[m.end() :]
            if not line:
                continue
            text = line.decode("utf-8", "replace")
            fl = re.fullmatch(r"flood (\d+)", text.strip())
            if fl:
                n = int(fl.group(1))
                pattern = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                blob = (pattern * (n // len(pattern) + 1))[:n]
                for name, term in self.uarts():
                    if name == periph:
                        term.write(blob + b"\r\nflood done\r\n")
            else:
                self.emit_to(periph, "echo: %s\r\n" % text)
        fw.linebuf[periph] = buf

    def uart_receive(self, periph, data):
        with self.lock:
            if self.fw is None:
                return
            if self.emu.started:
                if not self.fw.booted:
                    self.run_until(self.emu.vt_ns)
                if self.fw.runs:
                    self.process_rx(periph, data, self.emu.vt_ns)
            else:
                self.pending_rx.append((periph, data))

    def cpu_log(self, level, text):
        LOG.log(level, text, self.src("cpu"))

    def load_image(self, address, data, length=None):
        """An image written to memory (the head is kept: see cpu.Memory)."""
        self.memory.write(address, data, len(data) if length is None else length)

    def src(self, obj):
        """Log source name: 'machine/obj' when more than one machine exists."""
        return obj if len(self.emu.machines) <= 1 else "%s/%s" % (self.name, obj)


class GdbServer:
    """infra Utilities/GDB/GdbStub.cs over SocketServerProvider(false): 0.0.0.0, backlog 1."""

    def __init__(self, machine, port, autostart):
        self.machine, self.port, self.autostart = machine, port, autostart
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("0.0.0.0", port))
        self.sock.listen(1)
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.autostart and not self.machine.emu.started:
                self.machine.emu.start()
            self.serve(conn)

    def serve(self, conn):
        buf = b""
        try:
            while True:
                d = conn.recv(4096)
                if not d:
                    break
                buf += d
                while True:
                    buf = buf.lstrip(b"+-")
                    m = re.match(rb"\$([^#]*)#[0-9a-fA-F]{2}", buf, re.S)
                    if not m:
                        if buf.startswith(b"\x03"):
                            buf = buf[1:]
                            conn.sendall(b"$S05#b8")
                            continue
                        break
                    buf = buf[m.end() :]
                    conn.sendall(b"+")
                    payload = m.group(1)
                    reply = b"S05" if payload == b"?" else b""
                    conn.sendall(b"$" + reply + b"#" + b"%02x" % (sum(reply) % 256))
        except OSError:
            pass
        conn.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Emulation:
    def __init__(self):
        self.machines = {}  # name -> Machine, insertion ordered
        self.terminals = {}  # name -> PtyTerminal
        self.started = False
        self.vt_ns = 0
        self.rt_ns = 0
        self.lock = threading.RLock()
        self.counter = 0
        self.clock_thread = None
        self.crash_after = crash_after_start()

    def start(self):
        with self.lock:
            if self.started:
                return
            self.started = True
            for m in self.machines.values():
                LOG.log("INFO", "Machine started.", m.name)
            self.clock_thread = threading.Thread(target=self.clock, daemon=True)
            self.clock_thread.start()
            for m in self.machines.values():
                m.run_until(self.vt_ns)
        if self.crash_after:
            arm_crash_after(self.crash_after)

    def pause(self):
        with self.lock:
            if not self.started:
                return
            self.started = False
            for m in self.machines.values():
                LOG.log("INFO", "Machine paused.", m.name)
        if self.clock_thread and self.clock_thread is not threading.current_thread():
            self.clock_thread.join(1)

    def clock(self):
        """Virtual time advances at real-time speed while started."""
        last = time.monotonic()
        while True:
            time.sleep(0.01)
            with self.lock:
                if not self.started:
                    return
                now = time.monotonic()
                delta = int((now - last) * NS)
                last = now
                self.vt_ns += delta
                self.rt_ns += delta
                for m in list(self.machines.values()):
                    m.run_until(self.vt_ns)

    def run_for(self, ns):
        """Advances by exactly ns of virtual time, as fast as possible, then pauses."""
        with self.lock:
            target = self.vt_ns + ns
            for m in self.machines.values():
                m.run_until(self.vt_ns)
            # step whole seconds deterministically so tick order is stable
            while self.vt_ns < target:
                self.vt_ns = min(target, (self.vt_ns // NS + 1) * NS)
                for m in self.machines.values():
                    m.run_until(self.vt_ns)

    def dispose(self):
        self.pause()
        for m in self.machines.values():
            for g in m.gdb.values():
                g.close()
            LOG.log("INFO", "Disposed.", m.name)
        for t in self.terminals.values():
            t.dispose()

    # -- snapshots ---------------------------------------------------------------------------
    def to_state(self):
        ms = []
        for m in self.machines.values():
            ms.append(
                {
                    "name": m.name,
                    "periphs": m.periphs,
                    "cpu": m.cpu,
                    "platform": m.platform,
                    "fw": m.fw.state() if m.fw else None,
                    "memory": m.memory.state(),
                    "core": m.core.state() if m.core else None,
                    "elf_lowest": m.elf_lowest,
                }
            )
        ts = [
            {"name": t.name, "link": t.link, "force": t.force, "uart": [t.uart[0].name, t.uart[1]] if t.uart else None}
            for t in self.terminals.values()
        ]
        return {"vt_ns": self.vt_ns, "rt_ns": self.rt_ns, "counter": self.counter, "machines": ms, "terminals": ts}

    @classmethod
    def from_state(cls, st):
        emu = cls()
        emu.vt_ns, emu.rt_ns, emu.counter = st["vt_ns"], st["rt_ns"], st["counter"]
        for md in st["machines"]:
            m = Machine(emu, md["name"])
            m.periphs = {k: tuple(v) for k, v in md["periphs"].items()}
            m.cpu, m.platform = md["cpu"], md["platform"]
            m.fw = Firmware.from_state(md["fw"]) if md["fw"] else None
            m.memory = Memory.from_state(md["memory"])
            m.core = Cpu.from_state(m.cpu, m.cpu_log, md["core"]) if md["core"] else None
            m.elf_lowest = md["elf_lowest"]
            emu.machines[m.name] = m
        created = []
        try:
            for td in st["terminals"]:
                t = PtyTerminal(td["name"], td["link"], td["force"])
                # [PostDeserialization] Initialize(): a new PTY and the symlink are created again
                t.open()
                created.append(t)
                if td["uart"]:
                    t.uart = (emu.machines[td["uart"][0]], td["uart"][1])
                    t.dead = True
                emu.terminals[t.name] = t
        except CommandError:
            for t in created:
                t.dispose(unlink=False)
            raise
        return emu


SNAPSHOT_MAGIC = "renode-standin-snapshot-v1"
