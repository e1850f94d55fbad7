"""Emulation model: firmware behaviour, machines, GDB servers, the emulation and its snapshot state."""

import heapq
import re
import socket
import threading
import time

import hubs
from canmodel import CAN1_BASE, CAN_MARKER, MS, STMCAN, TICK_MS, CanEcu
from cpu import LINE_MAX, PROJECT_BOARDS, PROJECT_BUS, PROJECT_GPIOS, TICK_NS, Cpu, project_banner
from errors import CommandError
from faults import arm_crash_after, crash_after_start
from flashmodel import BOOTLOADER_MARKER, COUNTER_MARKER, FlashController, Memory, counter_update, firmware_at
from gpios import Gpios
from logs import LOG
from terminals import PtyTerminal
from tokens import NS

START_SLEEP_S = 0.1  # Emulation.StartAll's Thread.Sleep(100)


class Firmware:
    """Deterministic UART behaviour of a loaded image, driven by virtual time.

    `project` = (board, banner) for the project's own test firmware (firmware/), which the stand-in
    plays exactly: the banner on its board's console UART, `echo: <line>`, `ticks on`/`ticks off`
    (`tick <n>` every 100 ms of virtual time) and, on the STM32F4, the LED (PD12) following the button
    (PA0) and the bus on USART3 (each console line sent on it, `bus: <line>` for each line received),
    and the `can_ecu` build's CAN1 node (canmodel.CanEcu: SysTick every 1 ms, so its ticks count SysTicks).
    Any other image plays the generic stand-in firmware, which leaves the GPIOs alone and talks only on
    the UARTs a terminal is connected to.
    """

    def __init__(
        self, sha, loader, arch_ok=True, entry=0, project=None, counter=False, bootloader=None, silent=False, can=False
    ):
        self.sha, self.loader, self.arch_ok, self.entry = sha, loader, arch_ok, entry
        self.silent = silent  # code the stand-in cannot play: it prints nothing
        self.project = project
        self.counter = counter  # the `counter` build: a boot counter in flash, `reboot`
        self.bootloader = bootloader  # the bootloader build: the application's address
        self.can = can  # the `can_ecu` build (firmware/stm32f4/can_ecu.h)
        self.reset()

    def reset(self):
        self.booted = False
        self.runs = False  # whether the CPU started inside this image (decided at boot)
        self.boot_ns = None
        self.ticks = 0
        self.ticks_on_ns = None
        self.linebuf = {}
        self.button_down = False  # the project firmware's last reported button state
        self.ecu = None  # canmodel.CanEcu of the `can_ecu` build, from its boot on

    def tick_due_ns(self, k):
        """Virtual time of the project firmware's k-th tick since `ticks on`. The `can_ecu` build counts them
        down from its 1 ms SysTick (SysTick n at boot + n ms): the first comes TICK_MS SysTicks after
        `ticks on`, counting from the first SysTick after it, then one every TICK_MS."""
        if not self.can:
            return self.ticks_on_ns + k * TICK_NS
        first = (self.ticks_on_ns - self.boot_ns) // MS + 1 + TICK_MS - 1
        return self.boot_ns + (first + (k - 1) * TICK_MS) * MS

    @property
    def build_id(self):
        return self.project[1].rpartition("build=")[2].encode() if self.project else b""

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
            "button_down": self.button_down,
            "counter": self.counter,
            "bootloader": self.bootloader,
            "silent": self.silent,
            "can": self.can,
            "ecu": self.ecu.state() if self.ecu else None,
        }

    @classmethod
    def from_state(cls, st):
        fw = cls(st["sha"], st["loader"], st["arch_ok"], st["entry"], tuple(st["project"]) if st["project"] else None)
        fw.booted, fw.boot_ns, fw.ticks = st["booted"], st["boot_ns"], st["ticks"]
        fw.runs, fw.ticks_on_ns = st["runs"], st["ticks_on_ns"]
        fw.linebuf = {k: v.encode("latin-1") for k, v in st["linebuf"].items()}
        fw.button_down = st.get("button_down", False)
        fw.counter, fw.bootloader, fw.silent = st.get("counter", False), st.get("bootloader"), st.get("silent")
        fw.can = st.get("can", False)
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
        self.pending_rx = []  # (peripheral, bytes) received, for the firmware to process when it next runs
        self.hub_rx = []  # heap of (virtual ns due, seq, peripheral, bytes): a hub's WriteChar, queued (hubs.py)
        self.held = 0  # Machine.ObtainPausedState levels (a `machine Reset`): paused while the others run
        self.out_pending = []  # [peripheral, bytearray] printed but not yet delivered (cut by a precise pause)
        self.uart_handlers = {}  # peripheral -> [callable(byte)]: the UART's CharReceived (pyapi.py)
        self.actions = []  # heap of (virtual ns, seq, callable(ns scheduled at), ns scheduled at, name, handle)
        self.core = None  # Cpu: where the CPU starts (stand-in cpu.py)
        self.memory = Memory()
        self.elf_lowest = None  # lowest address of the last ELF: Renode guesses a Cortex-M's VTOR from it
        self.gpios = Gpios()  # buttons, LEDs and the platform's GPIO links (gpios.py)
        self.gpio_edges = set()  # (port, pin) inputs that changed since the running firmware last looked
        # MachineReset subscriptions of the monitor's ResetMachine (monitor.register_reset_command);
        # [Transient]: a machine from a snapshot has none
        self.reset_handlers = 0
        self.write_hooks = {}  # peripheral -> hook(value, offset) (sysbus SetHookBeforePeripheralWrite)
        self.read_hooks = {}  # peripheral -> hook(value, offset) (sysbus SetHookAfterPeripheralRead, 32-bit)
        self.cans = {}  # peripheral -> canmodel.STMCAN
        self.can_masters = {}  # slave STMCAN -> its master (`master: can1` in the .repl)
        # heap of (virtual ns due, seq, peripheral or None, frame or (handler, argument)): a hub's or the
        # host's HandleTimeDomainEvent, run at this machine's synced state `due` (hubs.py)
        self.can_rx = []
        self.controllers = {}  # peripheral -> flashmodel.FlashController
        self.flash_job = None  # the counter build's flash writes in progress (a generator)
        self.scanned = False  # whether the firmware in memory was looked for since the last reset or load
        self.request_reset = None  # the firmware's own reset (SYSRESETREQ): set by the monitor

    # -- firmware ----------------------------------------------------------------------------
    def uarts(self):
        """UART peripherals connected to a terminal, in platform order."""
        res = []
        for t in [*self.emu.terminals.values(), *self.emu.unregistered]:
            if t.uart and t.uart[0] is self:
                res.append((t.uart[1], t))
        order = list(self.periphs)
        return sorted(res, key=lambda x: order.index(x[0]) if x[0] in order else 0)

    def emit(self, text):
        for name in dict(self.uarts()):
            self.output(name, text.encode())

    def emit_to(self, periph, text):
        self.output(periph, text.encode())

    def output(self, periph, data):
        """The UART prints `data` now (the current virtual time); see deliver()."""
        self.out_pending.append([periph, bytearray(data)])
        self.deliver()

    def deliver(self):
        """Printed bytes go to the UART's CharReceived handlers, byte by byte, then to its terminals.

        A handler that asks for a precise pause stops the CPU right after that byte: the rest stays
        pending and is printed when the machine runs again, at the same virtual time. Nothing is
        printed while a pause is pending. A non-precise pause ends after the current write.
        """
        emu = self.emu
        while self.out_pending and not emu.pause_requested:
            periph, data = self.out_pending[0]
            n = len(data)
            handlers = list(self.uart_handlers.get(periph, ()))
            if handlers:
                for i, byte in enumerate(data):
                    for handler in handlers:
                        self.call(handler, byte)
                    if emu.pause_requested and emu.pause_precise:
                        n = i + 1
                        break
            chunk = bytes(data[:n])
            del data[:n]
            if not data:
                self.out_pending.pop(0)
            if chunk and emu.hubs:
                hubs.transmit(self, periph, chunk, emu.vt_ns)  # the hubs' CharReceived handlers
            for name, term in self.uarts():
                if name == periph:
                    term.write(chunk)

    def call(self, handler, *args):
        """An event handler or a scheduled action, on the CPU thread: its errors are logged."""
        try:
            handler(*args)
        except Exception as e:
            LOG.log("ERROR", "Exception in a handler: %s: %s" % (type(e).__name__, e), self.src("cpu"))

    def project_console(self):
        """The UART the project firmware prints on, if this machine has it (else its output goes nowhere)."""
        _, periph, typ = PROJECT_BOARDS[self.fw.project[0]]
        return periph if self.periphs.get(periph, ("",))[0] == typ else None

    def add_controllers(self):
        """The platform's STM32F4 flash controllers, each erasing the memory named `flash`."""
        flash = next((start for start, name in self.memory.names.items() if name == "flash"), None)
        for name, (typ, _) in self.periphs.items():
            if typ == "MTD.STM32F4_FlashController" and flash is not None:
                self.controllers[name] = FlashController(self, name, flash)

    def add_cans(self):
        """The platform's STMCANs (masters first: a slave shares its master's filters)."""
        stmcans = [name for name, (typ, _) in self.periphs.items() if typ == "CAN.STMCAN"]
        for name in sorted(stmcans, key=lambda n: n in self.can_masters):
            if name not in self.cans:
                master = self.cans.get(self.can_masters.get(name))
                self.cans[name] = STMCAN(self, name, master)

    def periph_start(self, name):
        """The address a peripheral is registered at on sysbus (`sysbus <0x40006400, +0x400>`), or None."""
        m = re.match(r"sysbus\s+<?\s*(0x[0-9a-fA-F]+|\d+)", self.periphs[name][1])
        return int(m.group(1), 0) if m else None

    def periph_at(self, address):
        return next((name for name in self.periphs if self.periph_start(name) == address), None)

    def can_at(self, address):
        """(peripheral, offset) of the STMCAN whose 0x400 bytes hold `address`, or None."""
        for name in self.cans:
            start = self.periph_start(name)
            if start is not None and start <= address < start + 0x400:
                return name, address - start
        return None

    def bus_read(self, periph, offset):
        """A 32-bit read of a modelled peripheral through the system bus: its value, then the read hook."""
        model = self.cans.get(periph)
        value = model.read(offset) if model is not None else 0
        hook = self.read_hooks.get(periph)
        if hook is not None:
            try:
                value = int(hook(value, offset)) & 0xFFFFFFFF
            except Exception as e:
                LOG.log("ERROR", "Exception in a bus hook: %s: %s" % (type(e).__name__, e), self.src("sysbus"))
        return value

    def bus_write(self, periph, offset, value):
        """A 32-bit write through the system bus: the write hook first (it may change the value)."""
        hook = self.write_hooks.get(periph)
        if hook is not None:
            value = int(hook(value, offset)) & 0xFFFFFFFF
        model = self.cans.get(periph)
        if model is not None:
            model.write(offset, value)

    def can_send(self, periph, frame):
        """An STMCAN's FrameSent: the hubs it is attached to (False if none)."""
        return hubs.transmit_frame(self, periph, frame, self.emu.vt_ns)

    def can_deliver(self, periph, frame, due_ns):
        """A frame for this machine's CAN peripheral at its synced state `due_ns` (HandleTimeDomainEvent)."""
        self.time_domain_event(due_ns, periph, frame)

    def time_domain_event(self, due_ns, periph, payload):
        with self.lock:
            self.emu.seq += 1
            heapq.heappush(self.can_rx, (due_ns, self.emu.seq, periph, payload))
        self.emu.wake.set()

    def can_received(self, now_ns):
        """The synced state: the HandleTimeDomainEvent actions due by now (before the CPU runs on)."""
        while self.can_rx and self.can_rx[0][0] <= now_ns:
            _, _, periph, payload = heapq.heappop(self.can_rx)
            if periph is None:
                handler, argument = payload
                self.call(handler, argument)
            elif periph in self.cans:
                self.cans[periph].on_frame_received(payload)

    def ecu_until(self, now_ns):
        """The `can_ecu` build: its SysTicks' CAN work due by now, then its CAN1 RX0 interrupt."""
        fw, emu = self.fw, self.emu
        ecu = fw.ecu
        while not emu.pause_requested and self.fw is fw:
            due = ecu.next_systick_ns(fw.boot_ns)
            if due > now_ns:
                break
            ecu.systick((due - fw.boot_ns) // MS, due)
        if ecu.irq() and not emu.pause_requested and self.fw is fw:
            ecu.rx_isr(now_ns, self.project_console())

    def flash_controller(self):
        return next(iter(self.controllers.values()))

    def log_as(self, obj, level, text):
        LOG.log(level, text, self.src(obj))

    def firmware_in_memory(self):
        """What the CPU would run from memory when no loader said (a new process, flash loaded back):
        the project build whose image starts at the vector table (Cortex-M) or PC."""
        core = self.core
        if core is None:
            return None
        start = (core.vtor if core.vtor_init else self.elf_lowest or 0) if core.cortex_m else core.pc
        kind, detail = firmware_at(self.memory, start)
        if kind == "bootloader":
            return Firmware("memory", "memory", True, start, None, bootloader=detail)
        banner = project_banner(detail)
        if banner is None:  # code the stand-in does not know, or none: the CPU starts (or halts), silent
            return Firmware("memory", "memory", True, start, None, silent=True)
        return Firmware(
            "memory", "memory", True, start, banner, counter=COUNTER_MARKER in detail, can=CAN_MARKER in detail
        )

    def recognise(self, image):
        """After a loader: the project's builds are recognised from memory when the CPU starts (what runs is
        what memory holds); other images keep the loader's firmware (the generic stand-in firmware)."""
        if self.fw.arch_ok and (self.fw.project or BOOTLOADER_MARKER.search(image)):
            self.fw, self.scanned = None, False

    def run_flash_job(self):
        while self.flash_job is not None and not self.emu.pause_requested:
            try:
                next(self.flash_job)
            except StopIteration:
                self.flash_job = None

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
        self.gpio_edges = set()  # edges before the firmware set up its interrupts are not latched
        if not fw.runs:
            return
        if fw.silent:
            return
        if fw.bootloader is not None:
            self.emit_to("usart2", "bootloader: starting the application at 0x%08X\r\n" % fw.bootloader)
            self.core.vtor = fw.bootloader  # SCB_VTOR, then the application's SP and reset vector
            app = self.firmware_in_memory()
            if app is not None:
                self.fw = app
                self.boot(now_ns)
            return
        if fw.project:
            gpios = PROJECT_GPIOS.get(fw.project[0])
            if gpios:  # the LED is set to the button's state once, silently, before the banner
                fw.button_down = self.gpios.level(*gpios[0])
                self.drive(gpios[1], fw.button_down)
            console = self.project_console()
            if console:
                self.emit_to(console, fw.project[1] + "\r\n")
                if fw.counter and self.controllers:
                    self.flash_job = counter_update(self, console)
                    self.run_flash_job()
            if fw.can and fw.project[0] == "stm32f4":
                fw.ecu = CanEcu(self, self.periph_at(CAN1_BASE), fw.build_id)
                fw.ecu.init()  # then SysTick every 1 ms: SysTick n at boot + n ms
            return
        for name, _ in self.uarts():
            self.emit_to(name, "Booting stand-in firmware sha256=%s loader=%s uart=%s\r\n" % (fw.sha, fw.loader, name))

    # -- virtual time ------------------------------------------------------------------------
    def next_event_ns(self, now_ns):
        """Virtual time of this machine's next event (>= now_ns when due now), or None."""
        with self.lock:
            times = []
            if self.out_pending:
                times.append(now_ns)
            if self.hub_rx:
                times.append(max(now_ns, self.hub_rx[0][0]))
            if self.can_rx:
                times.append(max(now_ns, self.can_rx[0][0]))
            fw = self.fw
            if fw is None and not self.scanned:
                times.append(now_ns)
            if fw is not None:
                if not fw.booted or self.pending_rx or self.gpio_edges or self.flash_job is not None:
                    times.append(now_ns)
                elif fw.runs and fw.project:
                    if fw.ticks_on_ns is not None:
                        times.append(fw.tick_due_ns(fw.ticks + 1))
                    if fw.ecu is not None:
                        times.append(now_ns if fw.ecu.irq() else fw.ecu.next_systick_ns(fw.boot_ns))
                elif fw.runs:
                    times.append(fw.boot_ns + (fw.ticks + 1) * NS)
            if self.actions:
                times.append(self.actions[0][0])
            return min(times) if times else None

    def step(self, now_ns):
        """Everything due at virtual time now_ns, in order (machine running), until a pause is requested:
        output cut by a pause, boot, GPIO inputs changed meanwhile, input received meanwhile, the
        firmware's ticks, scheduled actions."""
        emu = self.emu
        with self.lock:
            self.hub_received(now_ns)
            self.can_received(now_ns)
            self.deliver()
            if self.fw is None and not self.scanned:
                self.scanned = True
                self.fw = self.firmware_in_memory()
                if self.fw is None:
                    self.pending_rx = []
            self.run_flash_job()
            fw = self.fw
            if fw is not None and not emu.pause_requested and self.flash_job is None:
                if not fw.booted:
                    self.boot(now_ns)
                    fw = self.fw
                if not fw.runs:
                    self.pending_rx = []
                    self.gpio_edges = set()
                if self.gpio_edges and not emu.pause_requested:
                    self.gpio_interrupt()
                if fw.runs and fw.ecu is not None and not emu.pause_requested:
                    self.ecu_until(now_ns)  # SysTick (exception 15) before CAN1 RX0 (IRQ 20), both before USART2
                while fw.runs and self.pending_rx and not emu.pause_requested and self.fw is fw:
                    periph, data = self.pending_rx.pop(0)
                    self.process_rx(periph, data, now_ns)
                if fw.runs and self.fw is fw:  # not reset meanwhile by the firmware itself
                    self.ticks_until(now_ns)
            while self.actions and self.actions[0][0] <= now_ns and not emu.pause_requested:
                _, _, action, at_ns, _, _ = heapq.heappop(self.actions)
                self.call(action, at_ns)

    def ticks_until(self, now_ns):
        fw, emu = self.fw, self.emu
        if fw.project:
            console = self.project_console()
            while fw.ticks_on_ns is not None and fw.tick_due_ns(fw.ticks + 1) <= now_ns and not emu.pause_requested:
                fw.ticks += 1
                if console:
                    self.emit_to(console, "tick %d\r\n" % fw.ticks)
            return
        while fw.boot_ns + (fw.ticks + 1) * NS <= now_ns and not emu.pause_requested:
            fw.ticks += 1
            self.emit("tick %d\r\n" % fw.ticks)

    # -- buttons and LEDs (gpios.py) ------------------------------------------------------------
    def button(self, name, action):
        """Button.Press / Release / Toggle / PressAndRelease / Reset on this thread (monitor or Python)."""
        button = self.gpios.buttons[name]
        if action == "Reset":
            steps = button.reset_steps()
        elif action == "PressAndRelease":
            steps = [True, False]
        elif action == "Toggle":
            steps = [not button.pressed]
        else:
            steps = [action == "Press"]
        for pressed in steps:
            self.button_set(name, pressed)

    def button_set(self, name, pressed, log_errors=False):
        """One press or release: `Pressed` and the pin change now; a firmware that runs sees the pin's edge
        when it next runs (at once while the emulation runs, else when it is started, at that virtual
        time); StateChanged is raised now, on this thread (an exception in a handler reaches the caller,
        or is logged)."""
        button = self.gpios.buttons[name]
        with self.lock:
            before = button.level()
            button.pressed = pressed
            fw = self.fw
            if button.level() != before and fw is not None and fw.booted and fw.runs:
                self.gpio_edges.update(self.gpios.pins_of(name))
        for handler in list(button.handlers):
            if log_errors:
                self.call(handler, pressed)
            else:
                handler(pressed)
        self.emu.wake.set()

    def gpio_interrupt(self):
        """The project firmware's EXTI0 handler (STM32F4): PA0 read, PD12 written, a line when it changed."""
        fw = self.fw
        edges, self.gpio_edges = self.gpio_edges, set()
        gpios = PROJECT_GPIOS.get(fw.project[0]) if fw.project else None
        if gpios is None or gpios[0] not in edges:
            return
        down = self.gpios.level(*gpios[0])
        self.drive(gpios[1], down)  # a precise pause asked for by an LED handler holds the line below
        if down != fw.button_down:
            fw.button_down = down
            console = self.project_console()
            if console:
                self.emit_to(console, "button pressed\r\n" if down else "button released\r\n")

    def drive(self, pin, value):
        """A GPIO port's output pin is set: the LEDs it drives follow."""
        for name in self.gpios.driven(*pin):
            self.led_set(name, value)

    def led_set(self, name, value):
        """LED.OnGPIO(0, value): StateChanged(led, state) on this thread, only on a change."""
        led = self.gpios.leds[name]
        state = value != led.inverted
        if state == led.state:
            return
        led.state = state
        for handler in list(led.handlers):
            self.call(handler, led, state)

    def reset_gpios(self):
        """Machine reset: every button's Reset (its StateChanged is raised), every LED's Reset (silent)."""
        for name, button in list(self.gpios.buttons.items()):
            for pressed in button.reset_steps():
                self.button_set(name, pressed, log_errors=True)
        for led in self.gpios.leds.values():
            led.reset()
        self.gpio_edges = set()

    def peripheral_paths(self):
        """{path: peripheral name}: `sysbus.<name>`, or through the peripheral it is registered at
        (`UserButton: Miscellaneous.Button @ gpioPortA` is `sysbus.gpioPortA.UserButton`)."""

        def path(name, seen):
            registration = self.periphs[name][1].split()
            parent = registration[0] if registration else ""
            if parent in self.periphs and parent not in seen:
                return path(parent, seen | {name}) + "." + name
            return "sysbus." + name

        return {path(name, {name}): name for name in self.periphs}

    def schedule(self, delay_ns, action, name=None, handle=None):
        """Machine.ScheduleAction: action(ns scheduled at) runs once virtual time reaches now + delay.
        `handle` names the entry for unschedule() (ClockEntry.Handler in pyapi.py)."""
        with self.emu.lock:  # the clock cannot move between reading the time and queueing the action
            now = self.emu.vt_ns
            self.emu.seq += 1
            with self.lock:
                heapq.heappush(self.actions, (now + delay_ns, self.emu.seq, action, now, name, handle))
        self.emu.wake.set()

    def scheduled(self):
        """[(virtual ns due, ns scheduled at, name, handle)] of the actions not run yet, in order."""
        with self.lock:
            return [(a[0], a[3], a[4], a[5]) for a in sorted(self.actions, key=lambda a: a[:2])]

    def unschedule(self, handle):
        """ClockSource.TryRemoveClockEntry: whether an action with this handle was queued."""
        with self.emu.lock, self.lock:
            for i, a in enumerate(self.actions):
                if a[5] is handle:
                    del self.actions[i]
                    heapq.heapify(self.actions)
                    return True
        return False

    def project_rx(self, periph, data, now_ns):  # noqa: C901 - one branch per console command
        """The project firmware: a line buffer of LINE_MAX characters per UART; CR or LF ends a non-empty line.
        A console line is echoed, then (ticks handled) sent on the bus; a bus line is printed as `bus: <line>`
        on the console, neither sent back nor run as a command (firmware/README.md)."""
        fw = self.fw
        console, bus = self.project_console(), self.project_bus()
        if periph not in (console, bus):
            return
        buf = fw.linebuf.get(periph, b"")
        for byte in data:
            if byte in b"\r\n":
                line, buf = buf, b""
                if not line:
                    continue
                text = line.decode("latin-1")
                if periph == bus:
                    if console:
                        self.emit_to(console, "bus: %s\r\n" % text)
                    continue
                self.emit_to(periph, "echo: %s\r\n" % text)
                if line == b"ticks on":
                    fw.ticks_on_ns, fw.ticks = now_ns, 0
                elif line == b"ticks off":
                    fw.ticks_on_ns = None
                if bus:
                    self.emit_to(bus, "%s\r\n" % text)
                if fw.ecu is not None:
                    fw.ecu.console_line(line, console)
                if fw.counter and line == b"reboot" and self.request_reset is not None:
                    fw.linebuf[periph] = b""
                    self.request_reset()  # SYSRESETREQ: Machine.RequestReset, the `reset` macro included
                    return
            elif len(buf) < LINE_MAX:
                buf += bytes([byte])
        fw.linebuf[periph] = buf

    def project_bus(self):
        """The UART the project firmware uses as its bus (hubs.py), if its board has one and this machine has it."""
        bus = PROJECT_BUS.get(self.fw.project[0])
        return bus[0] if bus and self.periphs.get(bus[0], ("",))[0] == bus[1] else None

    def process_rx(self, periph, data, now_ns):
        fw = self.fw
        if fw.project:
            return self.project_rx(periph, data, now_ns)
        if periph not in dict(self.uarts()):
            return  # the generic firmware talks on its terminals' UARTs only (no echo loops through hubs)
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
                self.output(periph, blob + b"\r\nflood done\r\n")
            else:
                self.emit_to(periph, "echo: %s\r\n" % text)
        fw.linebuf[periph] = buf

    def uart_receive(self, periph, data, terminal=None):
        """Bytes a terminal passes to the UART (from its PTY reader thread): the firmware processes them
        when it next runs (at once if the emulation is running); the terminal's CharReceived fires now."""
        with self.lock:
            if self.fw is not None or not self.scanned:  # (not scanned: the code in memory is looked at first)
                self.pending_rx.append((periph, bytes(data)))
        if terminal is not None:
            handlers = list(terminal.handlers)
            for byte in data if handlers else b"":
                for handler in handlers:
                    self.call(handler, byte)
        self.emu.wake.set()

    def hub_receive(self, periph, data, due_ns):
        """A hub writes `data` into this machine's UART at its next synced state (`due_ns`, hubs.py)."""
        with self.lock:
            self.emu.seq += 1
            heapq.heappush(self.hub_rx, (due_ns, self.emu.seq, periph, bytes(data)))
        self.emu.wake.set()

    def hub_received(self, now_ns):
        """The hubs' WriteChar due by now: received like a terminal's input (dropped without firmware)."""
        while self.hub_rx and self.hub_rx[0][0] <= now_ns:
            _, _, periph, data = heapq.heappop(self.hub_rx)
            if self.fw is not None:
                self.pending_rx.append((periph, data))

    def is_paused(self):
        """Machine.IsPaused: not started by the emulation, or held by a reset."""
        return not self.emu.machines_started or self.held > 0

    def cpu_log(self, level, text):
        LOG.log(level, text, self.src("cpu"))

    def load_image(self, address, data):
        """An image's bytes written to memory."""
        self.memory.write(address, data)
        self.scanned = False

    def src(self, obj):
        """Log source name: 'machine/obj' when more than one machine exists."""
        return obj if len(self.emu.machines) <= 1 else "%s/%s" % (self.name, obj)


class GdbServer:
    """infra Utilities/GDB/GdbStub.cs over SocketServerProvider(false): 0.0.0.0, backlog 1."""

    def __init__(self, machine, port, autostart):
        self.machine, self.port, self.autostart = machine, port, autostart
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.bind(("0.0.0.0", port))
            self.sock.listen(1)
        except OSError:
            self.sock.close()
            raise
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.autostart and not self.machine.emu.started:
                self.machine.emu.start_all()
            self.serve(conn)

    def serve(self, conn):
        buf = b""
        try:
            # A connection halts the CPU and reports it unasked (measured on 1.16.1: `$S05#b8` arrives
            # before the answer to the client's first packet).
            conn.sendall(b"$S05#b8")
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
                    # `?` always answers S00 (infra GDB/Commands/ReportHaltReasonCommand.cs: StopReply(0)).
                    reply = b"S00" if payload == b"?" else b""
                    conn.sendall(b"$" + reply + b"#" + b"%02x" % (sum(reply) % 256))
        except OSError:
            pass
        conn.close()

    def close(self):
        """Frees the port at once, as Renode's dispose does (measured on 1.16.1: the same port can serve a
        GDB server again right after `Load` replaced the emulation). close() alone would leave the port
        bound while the accepting thread waits."""
        for step in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):
            try:
                step()
            except OSError:
                pass


class Emulation:
    """All machines on one virtual clock (vt_ns), advanced event by event (advance()).

    Every event happens at its own virtual time, in order: the firmware's boot output when a machine
    first runs, input received meanwhile when it next runs, its ticks at their times, scheduled actions
    at theirs. While started, a clock thread keeps virtual time at real-time speed (as real Renode does
    with firmware that sleeps in WFI) and wakes early for the next event or for input. `RunFor` advances
    as fast as possible. The thread advancing the clock is the "CPU thread": UART CharReceived handlers
    and scheduled actions run on it. A pause requested there (Machine.PauseAndRequestEmulationPause)
    stops the clock at that event: nothing later happens, and the emulation is paused when that step
    ends (its started-state listeners fire then).
    """

    def __init__(self):
        self.machines = {}  # name -> Machine, insertion ordered
        self.terminals = {}  # name -> PtyTerminal
        self.unregistered = []  # terminals RemoveExternal took out: neither saved nor disposed, still connected
        self.hubs = {}  # name -> hubs.Hub (UART/CAN hubs, switches)
        self.external_names = []  # ExternalsManager's names (terminals and hubs share them), in creation order
        self.externals_paused = True  # ExternalsManager.paused
        self.externals_started = False  # ExternalsManager.alreadyStarted
        self.started = False  # IsStarted
        self.machines_started = False  # InnerStartAll ran (externals and machines started)
        self.time_running = False  # MasterTimeSource started
        self.running = False  # all three: the first step ran and the clock thread serves this start
        self.vt_ns = 0
        self.rt_ns = 0
        self.lock = threading.RLock()
        self.counter = 0
        self.seq = 0  # orders scheduled actions that fall at the same time
        self.clock_thread = None
        self.run_id = 0  # which start() the clock thread serves
        self.wake = threading.Event()  # input or a new scheduled action: the clock thread steps at once
        self.stepping = None  # the thread advancing the clock right now (the CPU thread)
        self.pause_requested = False
        self.pause_precise = False
        self.listeners = []  # [(required started state, callback)]: GetStartedStateChangedEvent
        self.crash_after = crash_after_start()

    # -- started state -----------------------------------------------------------------------
    def set_started(self, value):
        """The IsStarted setter (private in Renode): logs, then the listeners waiting for this state (each
        fires once, as the IsStartedChanged event reaches GetStartedStateChangedEvent's handler). The
        machines run once it is true with InnerStartAll and MasterTimeSource.Start done (run_if_ready)."""
        with self.lock:
            if self.started == value:
                return
            self.started = value
            for m in self.machines.values():
                LOG.log("INFO", "Machine started." if value else "Machine paused.", m.name)
            due = [item for item in self.listeners if item[0] == value]
            self.listeners = [item for item in self.listeners if item[0] != value]
            for _, callback in due:
                callback()
            self.run_if_ready()

    def on_started_state(self, required, callback, wait_for_transition=True):
        """Emulation.GetStartedStateChangedEvent: callback() once IsStarted becomes `required`."""
        with self.lock:
            if self.started == required and not wait_for_transition:
                callback()
            else:
                self.listeners.append((required, callback))

    def request_pause(self, precise):
        """Machine.PauseAndRequestEmulationPause: nothing if not started (RunFor included); on the CPU
        thread the clock stops at the current event; from another thread the emulation pauses now."""
        if not self.started:
            return
        if self.stepping is threading.current_thread():
            self.pause_requested = True
            self.pause_precise = self.pause_precise or precise
        else:
            self.pause()

    def end_requested_pause(self):
        """The pause a Machine.PauseAndRequestEmulationPause asked for: PauseAll at the end of the step."""
        self.pause_requested = self.pause_precise = False
        self.stop_running()
        self.set_started(False)
        self.wake.set()

    def start_all(self):
        """Emulation.StartAll, the monitor's `start` (and GdbStub's autostart): start(), then
        `System.Threading.Thread.Sleep(100)` after machLock is released (infra Emulation.cs, commit
        563b429ad "A hacky workaround for s;p problem"), even when already started."""
        self.start()
        time.sleep(START_SLEEP_S)

    def start(self):
        """StartAll without its sleep, under machLock (self.lock): InnerStartAll, MasterTimeSource.Start,
        IsStarted = true. The stand-in's own restarts (after Save, around a reset) use this: Renode's
        paused states restart the time source, never through StartAll."""
        with self.lock:
            self.inner_start_all()
            self.start_time_source()
            self.set_started(True)

    def inner_start_all(self):
        """Emulation.InnerStartAll (private): externals and machines started; nothing runs before the
        master time source is started and IsStarted is set (run_if_ready)."""
        with self.lock:
            self.externals_start()
            self.machines_started = True
            self.run_if_ready()

    def externals_start(self):
        """ExternalsManager.Start: only when paused, the hubs are started (resumed once started before)."""
        if self.externals_paused:
            self.externals_paused, self.externals_started = False, True
            for hub in self.hubs.values():
                hub.started = True

    def externals_pause(self):
        """ExternalsManager.Pause."""
        if not self.externals_paused:
            self.externals_paused = True
            for hub in self.hubs.values():
                hub.started = False

    def start_time_source(self):
        """MasterTimeSource.Start."""
        with self.lock:
            self.time_running = True
            self.run_if_ready()

    def stop_time_source(self):
        """MasterTimeSource.Stop: the clock stops (IsStarted is left as it is)."""
        with self.lock:
            self.time_running = self.running = False
            self.wake.set()

    def stop_running(self):
        """PauseAll's MasterTimeSource.Stop, the machines' Pause and ExternalsManager.Pause."""
        self.machines_started = self.time_running = self.running = False
        self.externals_pause()

    def run_if_ready(self):
        """Once started, with the machines and the time source started: the first step runs here (boot
        output and input typed while paused happen at the start time), then the clock thread."""
        with self.lock:
            if self.running or not (self.started and self.machines_started and self.time_running):
                return
            self.running = True
            self.advance(self.vt_ns)
            if self.pause_requested:
                self.end_requested_pause()
            else:
                self.run_id += 1
                self.clock_thread = threading.Thread(target=self.clock, args=(self.run_id,), daemon=True)
                self.clock_thread.start()
        if self.crash_after:
            arm_crash_after(self.crash_after)

    def pause(self):
        """Emulation.PauseAll."""
        with self.lock:
            self.pause_requested = self.pause_precise = False
            self.stop_running()
            self.wake.set()
            if not self.started:
                return
            self.set_started(False)
        if self.clock_thread and self.clock_thread is not threading.current_thread():
            self.clock_thread.join(1)

    # -- the clock ---------------------------------------------------------------------------
    def next_event_ns(self):
        times = [m.next_event_ns(self.vt_ns) for m in list(self.machines.values())]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def advance(self, target_ns):
        """Runs every event up to target_ns in time order; virtual time ends at target_ns, or at the
        event where a pause was requested."""
        with self.lock:
            outer, self.stepping = self.stepping, threading.current_thread()
            try:
                while not self.pause_requested:
                    when = self.next_event_ns()
                    if when is None or when > target_ns:
                        self.vt_ns = max(self.vt_ns, target_ns)
                        return
                    self.vt_ns = max(self.vt_ns, when)
                    for m in list(self.machines.values()):
                        m.step(self.vt_ns)
                        if self.pause_requested:
                            break
            finally:
                self.stepping = outer

    def clock(self, run_id):
        """Virtual time advances at real-time speed while started."""
        last = time.monotonic()
        while True:
            self.wake.clear()  # a wake from now on makes the wait below return at once
            with self.lock:
                if not self.running or self.run_id != run_id:
                    return
                now = time.monotonic()
                delta = int((now - last) * NS)
                last = now
                self.rt_ns += delta
                self.advance(self.vt_ns + delta)
                if self.pause_requested:
                    self.end_requested_pause()
                    return
                when = self.next_event_ns()
                sleep = 0.01 if when is None else min(0.01, max(0, when - self.vt_ns) / NS)
            if sleep > 0:
                self.wake.wait(sleep)

    def run_for(self, ns):
        """Advances by exactly ns of virtual time, as fast as possible (Emulation.RunFor: not started;
        InnerStartAll's ExternalsManager.Start before, PauseAll's ExternalsManager.Pause after)."""
        with self.lock:
            self.externals_start()
        self.advance(self.vt_ns + ns)
        with self.lock:
            self.externals_pause()

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
                    "out_pending": [[p, d.hex()] for p, d in m.out_pending],
                    "hub_rx": [[due, seq, p, d.hex()] for due, seq, p, d in m.hub_rx],
                    # frames in flight (the host's Python actions are not kept)
                    "can_rx": [[due, seq, p, [f[0], f[1].hex(), f[2], f[3]]] for due, seq, p, f in m.can_rx if p],
                    "cans": {name: model.state() for name, model in m.cans.items()},
                    "can_masters": m.can_masters,
                    "gpios": m.gpios.state(),
                    "gpio_edges": sorted(m.gpio_edges),
                }
            )
        ts = [
            {"name": t.name, "link": t.link, "force": t.force, "uart": [t.uart[0].name, t.uart[1]] if t.uart else None}
            for t in self.terminals.values()
        ]
        return {
            "vt_ns": self.vt_ns,
            "rt_ns": self.rt_ns,
            "counter": self.counter,
            "machines": ms,
            "terminals": ts,
            "hubs": [h.state() for h in self.hubs.values()],
            "external_names": self.external_names,
            "externals": [self.externals_paused, self.externals_started],
            "seq": self.seq,
        }

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
            m.add_controllers()
            m.can_masters = md.get("can_masters", {})
            m.add_cans()
            for name, cst in md.get("cans", {}).items():
                m.cans[name].load_state(cst)
            m.can_rx = [
                (due, seq, p, (f[0], bytes.fromhex(f[1]), f[2], f[3])) for due, seq, p, f in md.get("can_rx", [])
            ]
            heapq.heapify(m.can_rx)
            if m.fw is not None and md["fw"].get("ecu"):
                m.fw.ecu = CanEcu.from_state(m, m.fw.build_id, md["fw"]["ecu"])
            m.core = Cpu.from_state(m.cpu, m.cpu_log, md["core"]) if md["core"] else None
            m.elf_lowest = md["elf_lowest"]
            m.out_pending = [[p, bytearray.fromhex(d)] for p, d in md.get("out_pending", [])]
            m.hub_rx = [(due, seq, p, bytes.fromhex(d)) for due, seq, p, d in md.get("hub_rx", [])]
            heapq.heapify(m.hub_rx)
            if "gpios" in md:
                m.gpios = Gpios.from_state(md["gpios"])
                m.gpio_edges = {tuple(edge) for edge in md["gpio_edges"]}
            emu.machines[m.name] = m
        for hd in st.get("hubs", []):
            emu.hubs[hd["name"]] = hubs.Hub.from_state(hd, emu.machines)
        emu.externals_paused, emu.externals_started = st.get("externals", [True, False])
        emu.seq = st.get("seq", 0)
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
            emu.external_names = st.get("external_names") or list(emu.terminals)
        except CommandError:
            for t in created:
                t.dispose(unlink=False)
            raise
        return emu


SNAPSHOT_MAGIC = "renode-standin-snapshot-v1"
