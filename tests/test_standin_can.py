"""The Renode stand-in's CAN: hubs carrying frames, Renode 1.16.1's STMCAN with its bugs, and the project's
`can_ecu` firmware (tests/standin/canmodel.py, hubs.py), driven through the monitor and its Python.

The expectations come from Renode's sources (infra CANHub.cs, STMCAN.cs, CANMessageFrame.cs, Machine.cs) and
from firmware/README.md (the `can_ecu` build, measured on 1.16.1); the driver's helper
(inside_renode/can.py) runs unchanged against the model.
"""

import re
import time

from test_standin import EXPECT_PY, RENODE_116, Console, kill
from test_standin_hubs import QUANTUM_NS, Boards

CAN_PY = EXPECT_PY.parent / "can.py"
PLATFORM = "platforms/boards/stm32f4_discovery-kit.repl"
CAN1 = 0x40006400
RF0R, RI0R, RDT0R, RL0R = 0x0C, 0x1B0, 0x1B4, 0x1B8
MS = 1_000_000

RECORDER = """\
from Antmicro.Renode.Core import EmulationManager
from System import Object
emulation = EmulationManager.Instance.CurrentEmulation
hub = [e for e in emulation.ExternalsManager.Externals if e.GetType().Name == "CANHub"][0]
carried = []  # (sending machine, id, data hex, virtual ns) of every frame the hub carries
def machine_of(sender):
    for m in emulation.Machines:
        if Object.ReferenceEquals(m["sysbus.can1"], sender):
            return m
def on_frame(external, sender, frame):
    m = machine_of(sender)
    carried.append((m.Name, int(frame.Id), "".join("%02x" % b for b in frame.Data), m.ElapsedVirtualTime.TimeElapsed.TotalNanoseconds))
hub.FrameReceived += on_frame
def mc_carried():
    print(";".join("%s %x %s %d" % f for f in carried))
"""


def carried(s):
    """[(machine, id, data hex, ns)] the recorder saw."""
    out = s.cmd("carried").strip()
    return [(m, int(i, 16), d, int(t)) for m, i, d, t in (f.split() for f in out.split(";") if f)]


def next_sync(ns):
    return (ns // QUANTUM_NS + 1) * QUANTUM_NS


class CanBoards(Boards):
    """Machines `a` and `b` with the `can_ecu` firmware, their CAN1s on the CAN hub `canbus`."""

    def __init__(self, firmware, tmp_path, names=("a", "b"), recorder=True):
        super().__init__(firmware(variant="can_ecu"), tmp_path, names)
        try:
            assert self.cmd('emulation CreateCANHub "canbus"') == ""
            for name in names:
                self.select(name)
                assert self.cmd("connector Connect sysbus.can1 canbus") == ""
            if recorder:
                script = tmp_path / "recorder.py"
                script.write_text(RECORDER)
                assert self.cmd(f"include @{script}") == ""
        except BaseException:
            self.close()
            raise


def test_a_frame_reaches_the_other_machine_at_its_next_sync_point(firmware, tmp_path):
    """CANHub.Transmit: FrameReceived sees the frame at the sender's exact time; the other machine takes it at
    its first synced state after that. Its STMCAN reports FMI 0 (CAN_RDT0R is built before the filters run),
    so the can_ecu firmware handles 0x2AB (bank 2) as a UDS request: `02 10 03` is answered on 0x7E8, padded
    with 0xAA (firmware/README.md), and nothing is forwarded."""
    with CanBoards(firmware, tmp_path) as s:
        s.start()
        a, b = s.ptys["a"], s.ptys["b"]
        a.type(b"can send 2AB#021003\r")
        assert a.line() == b"echo: can send 2AB#021003\r\n"
        deadline = time.monotonic() + 10
        while len([f for f in carried(s) if f[1] != 0x100]) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # b answers 100 us of virtual time later at most
        s.cmd("pause")
        frames = [f for f in carried(s) if f[1] != 0x100]
        assert [f[:3] for f in frames] == [("a", 0x2AB, "021003"), ("b", 0x7E8, "065003003201f4aa")]
        sent, answered = frames[0][3], frames[1][3]
        assert sent % QUANTUM_NS and answered == next_sync(sent)
        # the periodic frames: both ECUs, every 10 ms of virtual time from 10.000 ms on, byte 0 counting
        periodic = [f for f in carried(s) if f[1] == 0x100 and f[3] <= 30 * MS]
        assert periodic == [
            (m, 0x100, f"{k:02x}00000000000000", (k + 1) * 10 * MS) for k in range(3) for m in ("a", "b")
        ]
        s.cmd("start")
        b.type(b"ticks on\r")  # b printed nothing for the frame: no `can: rx` line before the echo
        assert b.line() == b"echo: ticks on\r\n"


def test_fmi_is_zero_without_the_drivers_hook_and_silicons_with_it(firmware, tmp_path):
    """With the driver's read hook (inside_renode/can.py) on CAN1, the firmware reads FMI 2 for 0x2xx through
    the bus and forwards the frame (`can: rx`, id + 0x100); the machine without it still answers it as UDS."""
    with CanBoards(firmware, tmp_path) as s:
        for line in (f"include @{EXPECT_PY}", f"include @{CAN_PY}"):
            assert s.cmd(line) == ""
        assert s.cmd('jumpstarter_can_attach "canbus" "a:sysbus.can1,b:sysbus.can1"') == ""
        assert s.cmd('jumpstarter_can_fmi_fix "sysbus.can1"') == "jumpstarter-can fmi fixed\r\r\n"  # on b
        assert s.cmd('jumpstarter_can_fmi_fix "sysbus.can2"') == "jumpstarter-can fmi not-stmcan\r\r\n"  # a slave
        assert s.cmd('jumpstarter_can_send "canbus" "2ab" "-" "021003"') == "jumpstarter-can sent 0\r\r\n"
        out = s.cmd('jumpstarter_can_recv "canbus" "3ab:7ff:-,7e8:7ff:-" "5000000" "10000"')
        # both machines take it at the first sync point; a (no hook) answers it as UDS, b forwards it
        assert out == f"jumpstarter-can frame {QUANTUM_NS} 0 {QUANTUM_NS} 7e8 - 065003003201f4aa\r\r\n"
        out = s.cmd('jumpstarter_can_recv "canbus" "3ab:7ff:-,7e8:7ff:-" "5000000" "10000"')
        assert out == f"jumpstarter-can frame {QUANTUM_NS} 0 {QUANTUM_NS} 3ab - 021003\r\r\n"
        assert s.cmd('jumpstarter_can_recv "canbus" "3ab:7ff:-,7e8:7ff:-" "5000000" "10000"').startswith(
            "jumpstarter-can timeout"
        )
        s.cmd("start")
        banner = s.fw.banner + b"\r\n"
        assert s.ptys["b"].until(b"fmi=2\r\n") == banner + b"can: rx 2AB#021003 fmi=2\r\n"
        s.ptys["a"].type(b"x\r")
        assert s.ptys["a"].until(b"echo: x\r\n") == banner + b"echo: x\r\n"  # a printed nothing for it


def test_uds_over_isotp_with_flow_control_timing(firmware, tmp_path):
    """The can_ecu UDS server through the driver's host node: a VIN read is a first frame, then consecutive
    frames after the tester's flow control, the first at once, the next STmin + 1 SysTicks later, then STmin
    apart (1 ms SysTicks from boot); a flow control after N_Bs (1000 ms) is ignored."""
    with CanBoards(firmware, tmp_path, names=("a",), recorder=False) as s:
        for line in (f"include @{EXPECT_PY}", f"include @{CAN_PY}"):
            assert s.cmd(line) == ""
        assert s.cmd('jumpstarter_can_attach "canbus" "a:sysbus.can1"') == ""

        def recv(timeout_ns=50 * MS):
            out = s.cmd(f'jumpstarter_can_recv "canbus" "7e8:7ff:-" "{timeout_ns}" "10000"')
            m = re.fullmatch(r"jumpstarter-can (\w+) (\d+) 0(?: (\d+) 7e8 - ([0-9a-f]+))?\r\r\n", out)
            assert m, out
            return (m[1], int(m[3]), m[4]) if m[1] == "frame" else (m[1], int(m[2]), None)

        def send(data):
            out = s.cmd(f'jumpstarter_can_send "canbus" "7e0" "-" "{data}"')
            return int(re.fullmatch(r"jumpstarter-can sent (\d+)\r\r\n", out)[1])

        t = send("0322f190")
        assert recv() == ("frame", next_sync(t), "101462f1904a5352")
        t = send("3000050000000000")  # ContinueToSend, BS 0, STmin 5 ms
        arrival = next_sync(t)
        first_systick = arrival // MS + 1
        assert recv() == ("frame", arrival, "21454e4f44455645")
        assert recv() == ("frame", (first_systick + 5) * MS, "2243553030303031")
        assert recv()[0] == "timeout"
        for request, answer in (
            ("0210010000000000", "065001003201f4aa"),
            ("023e000000000000", "027e00aaaaaaaaaa"),
            ("0322f18c00000000", "0762f18c74657374"),  # the build id, `test`
            ("03221234", "037f2231aaaaaaaa"),
            ("0211010000000000", "037f1111aaaaaaaa"),
            ("021002", "037f1012aaaaaaaa"),
        ):
            t = send(request)
            assert recv() == ("frame", next_sync(t), answer)
        t = send("0322f190")
        assert recv() == ("frame", next_sync(t), "101462f1904a5352")
        assert recv(1000 * MS)[0] == "timeout"  # N_Bs runs out meanwhile
        send("3000000000000000")
        assert recv()[0] == "timeout"


def test_a_dlc_0_frame_from_the_firmware_kills_renode(firmware, tmp_path):
    """STMCAN leaves Data null for DLC 0 and CANHub's ToSocketCAN throws (measured: firmware/README.md)."""
    with CanBoards(firmware, tmp_path, names=("a",), recorder=False) as s:
        s.start()
        s.ptys["a"].type(b"can send 123#\r")
        assert s.c.proc.wait(10) != 0
        stderr = s.c.proc.stderr.read()
        assert b"Fatal error" in stderr and b"NullReferenceException" in stderr


class Bare:
    """The stand-in with one STM32F4 machine and no firmware: the STMCANs driven through the monitor."""

    def __init__(self):
        self.c = Console("--plain", version=RENODE_116)
        try:
            self.c.take(b"(monitor) ")
            assert self.c.run('mach create "m"', b"(m) ") == ""
            assert self.cmd(f"machine LoadPlatformDescription @{PLATFORM}") == ""
            assert self.cmd('python "from Antmicro.Renode.Core.CAN import CANMessageFrame"') == ""
            assert self.cmd('python "from System import Array, Byte, Func, Int64, UInt32"') == ""
            assert self.cmd("python \"can = self.Machine['sysbus.can1']\"") == ""
        except BaseException:
            kill(self.c.proc)
            raise

    def cmd(self, line):
        return self.c.run(line, b"(m) ")

    def write(self, offset, value, base=CAN1):
        assert self.cmd(f"sysbus WriteDoubleWord 0x{base + offset:X} 0x{value:X}") == ""

    def read(self, offset, base=CAN1):
        return int(self.cmd(f"sysbus ReadDoubleWord 0x{base + offset:X}").strip(), 16)

    def filters(self, banks, fs1r, fm1r=0, ffa1r=0):
        """Out of sleep, then `banks` {bank: (FR1, FR2)} under FINIT, all active."""
        self.write(0x00, 0x1)  # MCR: INRQ, SLEEP cleared
        self.write(0x200, 0x2A1C0E01)  # FMR: FINIT (CAN2SB 14)
        for offset, value in ((0x204, fm1r), (0x20C, fs1r), (0x214, ffa1r)):
            self.write(offset, value)
        for bank, (fr1, fr2) in banks.items():
            self.write(0x240 + 8 * bank, fr1)
            self.write(0x244 + 8 * bank, fr2)
        self.write(0x21C, sum(1 << bank for bank in banks))  # FA1R
        self.write(0x200, 0x2A1C0E00)
        self.write(0x00, 0x0)

    def frame(self, ident, data=b"\x11\x22", extended=False):
        line = 'python "can.OnFrameReceived(CANMessageFrame(%d, Array[Byte](%s), %s, False, False, False))"'
        assert self.cmd(line % (ident, list(data), extended)) == ""

    def received(self):
        """The ids in FIFO0, each read and released (RF0R.RFOM)."""
        ids = []
        while self.read(RF0R) & 3:
            rir = self.read(RI0R)
            ids.append(rir >> 3 & 0x1FFFFFFF if rir & 4 else rir >> 21)
            self.write(RF0R, 0x20)
        return ids

    def close(self):
        kill(self.c.proc)


def test_stmcan_fmi_and_the_bus_read_hook(tmp_path):
    """CAN_RDT0R reads FMI 0 for a frame bank 2 took; a 32-bit read hook on the bus changes what the bus reads,
    not what the peripheral itself reads; clearing it restores the model's value."""
    s = Bare()
    try:
        assert s.read(0x00) == 0x00010002  # MCR after reset: SLEEP
        exact = 0x7FF << 21 | 6
        s.filters({0: (0x7E0 << 21, exact), 1: (0x7DF << 21, exact), 2: (0x200 << 21, 0x700 << 21 | 6)}, fs1r=7)
        s.write(0x00, 0x2)  # sleep again: a frame only raises the wake-up flag (MSR.WKUI)
        s.frame(0x2AB)
        assert (s.read(RF0R), s.read(0x04) & 0x8) == (0, 0x8)
        s.write(0x00, 0x0)
        s.frame(0x2AB, b"\x01\x02\x03")
        assert s.read(RF0R) == 1
        assert s.read(RI0R) == 0x2AB << 21
        assert s.read(RDT0R) == 3  # DLC 3, FMI 0
        assert s.read(RL0R) == 0x030201
        hook = f"lambda value, offset: UInt32(int(value) | 0x4200) if offset == {RDT0R} else value"
        line = 'python "self.Machine.SystemBus.SetHookAfterPeripheralRead[UInt32](can, Func[UInt32, Int64, UInt32](%s), None)"'
        assert s.cmd(line % hook) == ""
        assert s.read(RDT0R) == 0x4203
        assert s.read(RI0R) == 0x2AB << 21
        assert s.cmd(f'python "print(can.ReadDoubleWord({RDT0R}))"') == "3\r\r\n"
        assert s.cmd('python "self.Machine.SystemBus.ClearHookAfterPeripheralRead[UInt32](can)"') == ""
        assert s.read(RDT0R) == 3
        assert s.received() == [0x2AB]
        assert s.read(RDT0R) == 0  # empty FIFO: 0
    finally:
        s.close()


def test_stmcan_16_bit_banks_and_exid_bugs(tmp_path):
    """A 16-bit mask bank as RM0090 lays it out (FR1: id low half, mask high half; FR2: a second filter):
    Renode takes the upper half as the id and the lower as the mask, and never looks at FR2's filter.
    A 32-bit mask bank compares only EXID's low 14 bits (EXIDMask 0x3FFF)."""
    s = Bare()
    try:
        half = lambda ident, bits=0: ident << 5 | bits  # noqa: E731
        fr1 = half(0x7FF, 0x18) << 16 | half(0x123)  # filter 0: exactly 0x123 (IDE and RTR in the mask)
        fr2 = half(0x7FF, 0x18) << 16 | half(0x456)  # filter 1: exactly 0x456
        s.filters({0: (fr1, fr2)}, fs1r=0)
        for ident in (0x123, 0x1FF, 0x456, 0x7FF, 0x100):
            s.frame(ident)
        # Renode: id 0x7FF (and IDE/RTR from bits 4/3), mask 0x123: whatever has the bits of 0x123 passes
        assert s.received() == [0x123, 0x1FF, 0x7FF]
        extended = 0x1ABCDEF
        s.filters({3: (extended << 3 | 4, 0x1FFFFFFF << 3 | 6)}, fs1r=1 << 3)
        s.frame(extended ^ 1 << 17, extended=True)  # differs in EXID bit 17: not compared
        s.frame(extended ^ 1 << 13, extended=True)  # EXID bit 13: compared
        s.frame(extended, extended=True)
        assert s.received() == [extended ^ 1 << 17, extended]
    finally:
        s.close()


def test_stmcan_fifo_keeps_the_three_newest(tmp_path):
    """Four frames for FIFO0: the oldest is dropped and FOVR set (MCR.RFLM clear); FULL with three."""
    s = Bare()
    try:
        s.filters({0: (0, 0)}, fs1r=1)  # 32-bit mask 0: everything
        for ident in (0x10, 0x11, 0x12):
            s.frame(ident)
        assert s.read(RF0R) == 0x8 | 3
        s.frame(0x13)
        assert s.read(RF0R) == 0x18 | 3
        assert s.received() == [0x11, 0x12, 0x13]
        assert s.read(RF0R) == 0x18  # FULL and FOVR stay until written 1
    finally:
        s.close()


def test_save_refuses_python_can_handlers(firmware, tmp_path):
    """A Python handler on a CAN hub's FrameReceived, or a Python bus read hook, makes `Save` fail (derived
    from the sources); the driver's unhook lets it through, and the loaded snapshot keeps the filters."""
    with CanBoards(firmware, tmp_path, names=("a",), recorder=False) as s:
        for line in (f"include @{EXPECT_PY}", f"include @{CAN_PY}"):
            assert s.cmd(line) == ""
        assert s.cmd('jumpstarter_can_attach "canbus" "a:sysbus.can1"') == ""
        assert s.cmd('jumpstarter_can_fmi_fix "sysbus.can1"') == "jumpstarter-can fmi fixed\r\r\n"
        assert s.cmd('jumpstarter_can_recv "canbus" "100:7ff:-" "20000000" "10000"').startswith("jumpstarter-can frame")
        snap = tmp_path / "s.save"
        assert "Pointer or ThreadLocal or SpinLock" in s.cmd(f"Save @{snap}")
        assert s.cmd("jumpstarter_can_unhook") == ""
        assert s.cmd(f"Save @{snap}") == ""
        assert s.cmd('jumpstarter_can_fmi_fix "sysbus.can1"') == "jumpstarter-can fmi fixed\r\r\n"  # the hook alone
        assert "Pointer or ThreadLocal or SpinLock" in s.cmd(f"Save @{snap}")
        assert s.cmd("jumpstarter_can_unhook") == ""
        assert s.cmd('jumpstarter_can_attach "canbus" "a:sysbus.can1"') == ""  # the FrameReceived handler alone
        assert "Pointer or ThreadLocal or SpinLock" in s.cmd(f"Save @{snap}")
        assert s.cmd("jumpstarter_can_unhook") == ""
        assert s.cmd(f"Save @{snap}") == ""
        assert s.cmd(f"Load @{snap}", prompt="(monitor) ") == ""  # the selection is cleared
        s.select("a")
        assert (
            s.cmd("python \"print(hex(monitor.Machine['sysbus.can1'].ReadDoubleWord(0x248)))\"") == "0xfbe00000\r\r\n"
        )
