"""Renode 1.16.1's STMCAN (bxCAN) as far as frames, filters and the RX FIFOs go, and the project's `can_ecu`
firmware (firmware/stm32f4/can_ecu.h), as the stand-in plays them.

STMCAN follows infra `Peripherals/Peripherals/CAN/STMCAN.cs` (add012af), bugs included:
- OnFrameReceived: in sleep mode (MCR.SLEEP, set at reset) the frame is dropped (a wake-up flag at most);
  in loopback mode (BTR.LBKM) too; otherwise one CANMessage is built, its CAN_RDTR generated right there,
  in the constructor, from FilterMatchIndex = 0: FMI reads 0 for every frame, whatever filter took it.
  Then for FIFO 0 and FIFO 1 in turn: FilterCANMessage(fifo) = the first active bank of that FIFO's
  prioritized list (rebuilt only when FA1R is written; banks of this controller: `i < CAN2SB` for the
  master, the others for the slave) whose MatchMessage is true; a match puts the message in the FIFO
  (so a frame two FIFOs accept is received twice).
- MatchMessage, mask mode: `for(i = 0; i < numOfFilters / 2; i += 2)` looks at filters[0] (id) and
  filters[1] (mask) only. 32-bit: FR1 id, FR2 mask; EXID compared under EXIDMask 0x3FFF (the top 4 of the
  18 EXID bits are ignored). 16-bit: ExtractFilters makes filters[0] the UPPER half of FR1 and filters[1]
  its lower half (RM0090: lower = id, upper = mask), so the id and mask are swapped and FR2's filter is
  never looked at; IDE is read from bit 4 and RTR from bit 3 of each half (RM0090: RTR bit 4, IDE bit 3).
  List mode: 32-bit FR1, FR2; 16-bit [FR1 upper, FR1 lower, FR2 upper, FR2 lower], each compared whole.
- RX FIFO: 3 messages; a fourth drops the oldest (FOVR) unless MCR.RFLM (then the new one is lost);
  RFxR reads FULL | FOVR | count; writing RFOM dequeues at once. RIxR/RDTxR/RLxR/RHxR read the head, 0 if
  empty. The FIFOs are not emptied by a reset (registers.Reset leaves the queues).
- Transmit: writing TIxR with TXRQ sends the mailbox at once (FrameSent: the hubs), unless BTR.SILM; with
  nobody subscribed the error code (ESR.LEC) becomes 5. A DLC 0 frame has Data null (ExtractDataRegisters
  fills it only for DLC > 0): a hub it reaches dies on it (hubs.py). TSR's TMEx bits are never cleared: every mailbox
  is always free. In loopback mode the frame is filtered into its own FIFOs too.
- Filter registers: FM1R, FS1R, FFA1R are written only with FMR.FINIT; a bank's FR1/FR2 only with FINIT or
  the bank inactive; FA1R always (it rebuilds both prioritized lists). The slave (`master: can1`) shares
  the master's filter registers and banks; its filter-area writes are ignored, its reads are the master's.
Registers not listed here read 0 (the stand-in does not model them).
"""

from __future__ import annotations

# -- STMCAN -------------------------------------------------------------------------------------------

MCR, MSR, TSR, RF0R, RF1R, IER, ESR, BTR = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C
TIR = (0x180, 0x190, 0x1A0)
RIR, RDTR, RLR, RHR = (0x1B0, 0x1C0), (0x1B4, 0x1C4), (0x1B8, 0x1C8), (0x1BC, 0x1CC)
FMR, FM1R, FS1R, FFA1R, FA1R = 0x200, 0x204, 0x20C, 0x214, 0x21C
F0R1, F27R2 = 0x240, 0x31C
BANKS = 28
FIFO_DEPTH = 3

MCR_INRQ, MCR_SLEEP, MCR_RFLM, MCR_AWUM, MCR_RESET = 1 << 0, 1 << 1, 1 << 3, 1 << 5, 1 << 15
MCR_BITS = 0x000100FF  # DBF and bits 7:0: what GetValue gives back
MSR_INAK, MSR_SLAK, MSR_WKUI = 1 << 0, 1 << 1, 1 << 3
BTR_LBKM, BTR_SILM = 1 << 30, 1 << 31
RF_FULL, RF_FOVR, RF_RFOM = 1 << 3, 1 << 4, 1 << 5
IER_FMPIE = (1 << 1, 1 << 4)
TXRQ = 1 << 0
TME_ALL = 7 << 26
TSR_DONE = ((1 << 26) | 3, (1 << 27) | (3 << 8), (1 << 28) | (3 << 16))  # TMEx | TXOKx | RQCPx
LEC_BIT_DOMINANT = 5 << 4


def rir_of(frame):
    """CANMessage.GetRIRFromCANMessageFrame: the frame as CAN_RIxR (STID 31:21, EXID 20:3, IDE, RTR)."""
    ident, _, extended, remote = frame
    extended_id = ident if extended else ident << 18
    return (extended_id << 3 | (4 if extended else 0) | (2 if remote else 0)) & 0xFFFFFFFF


def frame_of(rir, data):
    """CANMessage.ToCANMessageFrame (CreateWithExtendedId)."""
    extended = bool(rir & 4)
    ident = (rir >> 3) & 0x1FFFFFFF
    return (ident if extended else ident >> 18, None if data is None else bytes(data), extended, bool(rir & 2))


def _fields(rir):
    return (rir >> 21) & 0x7FF, (rir >> 3) & 0x3FFFF, (rir >> 2) & 1, (rir >> 1) & 1  # STID, EXID, IDE, RTR


def _filters(scale32, fr):
    """ExtractFilters: [(STID, EXID, IDE, RTR, EXIDMask)], Renode's bit positions (16-bit: IDE bit 4, RTR 3)."""
    if scale32:
        return [(*_fields(value), 0x3FFF) for value in fr]
    out = []
    for value in fr:
        for half in (value >> 16, value & 0xFFFF):  # the upper half first
            out.append(((half >> 5) & 0x7FF, (half & 7) << 15, (half >> 4) & 1, (half >> 3) & 1, 7 << 15))
    return out


def bank_matches(scale32, list_mode, fr, rir):
    """FilterBank.MatchMessage."""
    filters = _filters(scale32, fr)
    stid, exid, ide, rtr = _fields(rir)
    if not list_mode:
        count = 2 if scale32 else 4
        for i in range(0, count // 2, 2):  # i = 0 only: one filter per bank, even for a 16-bit bank
            f, m = filters[i], filters[i + 1]
            if (
                f[0] & m[0] == stid & m[0]
                and f[1] & m[1] & m[4] == exid & m[1] & m[4]
                and f[2] & m[2] == ide & m[2]
                and f[3] & m[3] == rtr & m[3]
            ):
                return True
        return False
    return any(f[0] == stid and f[1] & f[4] == exid & f[4] and f[2] == ide and f[3] == rtr for f in filters)


class FilterState:
    """The filter registers and banks a master STMCAN owns (and its slave shares)."""

    def __init__(self):
        self.fr = [[0, 0] for _ in range(BANKS)]
        self.prioritized = [[], []]  # FifoFiltersPrioritized: bank numbers, as of the last FA1R write
        self.reset()

    def reset(self):
        self.fmr, self.fm1r, self.fs1r, self.ffa1r, self.fa1r = 0x2A1C0E01, 0, 0, 0, 0
        # FilterBank fields, set from the registers only when those are written
        self.active = [False] * BANKS
        self.list_mode = [False] * BANKS
        self.scale32 = [False] * BANKS
        self.fifo = [0] * BANKS

    def can2_start(self):
        return (self.fmr >> 8) & 0x3F

    def state(self):
        return {k: getattr(self, k) for k in ("fr", "prioritized", "fmr", "fm1r", "fs1r", "ffa1r", "fa1r")} | {
            "banks": [self.active, self.list_mode, self.scale32, self.fifo]
        }

    @classmethod
    def from_state(cls, st):
        fs = cls()
        for key in ("fr", "prioritized", "fmr", "fm1r", "fs1r", "ffa1r", "fa1r"):
            setattr(fs, key, st[key])
        fs.active, fs.list_mode, fs.scale32, fs.fifo = st["banks"]
        return fs


class STMCAN:
    """One STMCAN. `send(frame)` is its FrameSent event: None when nobody subscribed (no hub)."""

    def __init__(self, machine, name, master=None):
        self.machine, self.name, self.master = machine, name, master
        self.filters = master.filters if master is not None else FilterState()
        self.fifos = [[], []]  # [(rir, rdtr, rlr, rhr)] per FIFO
        self.reset()

    @property
    def is_slave(self):
        return self.master is not None

    def reset(self):
        """registers.Reset(!IsSlave) (the FIFOs keep their messages); the master's banks too."""
        self.mcr, self.msr, self.tsr, self.ier, self.esr, self.btr = (
            0x00010002,
            0x00000C02,
            0x1C000000,
            0,
            0,
            0x01230000,
        )
        self.full, self.ovr = [False, False], [False, False]
        self.tx = [[0, 0, 0, 0] for _ in TIR]  # TIR, TDTR, TDLR, TDHR
        if not self.is_slave:
            self.filters.reset()

    def state(self):
        st = {k: getattr(self, k) for k in ("mcr", "msr", "tsr", "ier", "esr", "btr", "full", "ovr", "tx", "fifos")}
        if not self.is_slave:
            st["filters"] = self.filters.state()
        return st

    def load_state(self, st):
        for key, value in st.items():
            if key == "filters":  # in place: the slave shares this object
                self.filters.__dict__.update(FilterState.from_state(value).__dict__)
            elif key == "fifos":
                self.fifos = [[tuple(m) for m in fifo] for fifo in value]
            else:
                setattr(self, key, value)

    # -- receive ------------------------------------------------------------------------------------
    def own_banks(self, fifo):
        fs = self.filters
        return [b for b in fs.prioritized[fifo] if (b < fs.can2_start()) == (not self.is_slave)]

    def accepts(self, fifo, rir):
        """FilterCANMessage(fifo)."""
        fs = self.filters
        return any(
            fs.active[b] and bank_matches(fs.scale32[b], fs.list_mode[b], fs.fr[b], rir) for b in self.own_banks(fifo)
        )

    def on_frame_received(self, frame):
        """OnFrameReceived (a hub's or the host's frame, in the machine's synced state)."""
        if self.mcr & MCR_SLEEP:
            if self.mcr & MCR_AWUM:
                self.mcr &= ~MCR_SLEEP
                self.msr &= ~MSR_SLAK
            self.msr |= MSR_WKUI
            return
        if self.btr & BTR_LBKM:
            return
        self.receive(frame)

    def receive(self, frame):
        data = frame[1]
        rir = rir_of(frame)
        rdtr = len(data) & 0xF  # GenerateRDTRRegister in the constructor: TIME 0, FMI 0, DLC
        padded = bytes(data[:8]) + bytes(8)
        message = (rir, rdtr, int.from_bytes(padded[:4], "little"), int.from_bytes(padded[4:8], "little"))
        for fifo in (0, 1):
            if self.accepts(fifo, rir):
                queue = self.fifos[fifo]
                if len(queue) < FIFO_DEPTH:
                    queue.append(message)
                    self.full[fifo] = len(queue) == FIFO_DEPTH
                elif not self.mcr & MCR_RFLM:
                    queue.pop(0)
                    queue.append(message)
                    self.ovr[fifo] = True
                else:
                    self.ovr[fifo] = True

    def irq_rx(self, fifo):
        """The FIFO's interrupt line (FMP only: the firmware enables nothing else)."""
        return bool(self.ier & IER_FMPIE[fifo] and self.fifos[fifo])

    # -- registers ------------------------------------------------------------------------------------
    def read(self, offset):
        """ReadDoubleWord (no bus hooks: the machine's bus_read applies them)."""
        fs = self.filters
        if F0R1 <= offset <= F27R2:
            return fs.fr[(offset - F0R1) // 8][(offset - F0R1) // 4 % 2]
        if offset in (RF0R, RF1R):
            fifo = 0 if offset == RF0R else 1
            return (RF_FULL if self.full[fifo] else 0) | (RF_FOVR if self.ovr[fifo] else 0) | len(self.fifos[fifo]) & 3
        for fifo in (0, 1):
            for index, registers in enumerate((RIR, RDTR, RLR, RHR)):
                if offset == registers[fifo]:
                    return self.fifos[fifo][0][index] if self.fifos[fifo] else 0
        for mailbox, tir in enumerate(TIR):
            if tir <= offset < tir + 16:
                return self.tx[mailbox][(offset - tir) // 4]
        if offset == BTR:
            return self.btr if self.msr & MSR_INAK else 0
        named = {MCR: self.mcr, MSR: self.msr, TSR: self.tsr, IER: self.ier, ESR: self.esr}
        named.update({FMR: fs.fmr, FM1R: fs.fm1r, FS1R: fs.fs1r, FFA1R: fs.ffa1r, FA1R: fs.fa1r})
        return named.get(offset, 0)

    def write(self, offset, value):  # noqa: C901 - one branch per register, as STMCAN.WriteDoubleWord
        """WriteDoubleWord (no bus hooks)."""
        fs = self.filters
        if self.is_slave and FMR <= offset <= F27R2:
            return  # "the slave has to be configured via master's filters. This change has no effect."
        if F0R1 <= offset <= F27R2:
            bank = (offset - F0R1) // 8
            if fs.fmr & 1 or not fs.fa1r >> bank & 1:
                fs.fr[bank][(offset - F0R1) // 4 % 2] = value
            return
        if offset == MCR:
            self.mcr = value & MCR_BITS
            if value & MCR_INRQ and not value & MCR_SLEEP:
                self.msr = (self.msr | MSR_INAK) & ~MSR_SLAK
            elif value & MCR_SLEEP and not value & MCR_INRQ:
                self.msr = (self.msr | MSR_SLAK | 1 << 4) & ~MSR_INAK
            else:
                self.msr &= ~(MSR_SLAK | MSR_INAK)
            if value & MCR_RESET:
                self.reset()  # registers.Reset(): the filters too, even for the slave's shared ones
                self.filters.reset()
        elif offset == MSR:
            self.msr &= ~(value & 0x1C)  # SLAKI, WKUI, ERRI: write 1 to clear
        elif offset in (RF0R, RF1R):
            fifo = 0 if offset == RF0R else 1
            if value & RF_FULL:
                self.full[fifo] = False
            if value & RF_FOVR:
                self.ovr[fifo] = False
            if value & RF_RFOM and self.fifos[fifo]:
                self.fifos[fifo].pop(0)
        elif offset == IER:
            self.ier = value & 0x3FF7F
        elif offset == BTR:
            if self.msr & MSR_INAK:
                self.btr = value
        elif offset == FMR:
            fs.fmr = value & 0xFFFFFFFF
        elif offset in (FM1R, FS1R, FFA1R):
            if fs.fmr & 1:
                bits = [value >> bank & 1 for bank in range(BANKS)]
                if offset == FM1R:
                    fs.fm1r, fs.list_mode = value, [bool(b) for b in bits]
                elif offset == FS1R:
                    fs.fs1r, fs.scale32 = value, [bool(b) for b in bits]
                else:
                    fs.ffa1r, fs.fifo = value, bits
        elif offset == FA1R:
            fs.fa1r = value & 0xFFFFFFF
            fs.active = [bool(fs.fa1r >> bank & 1) for bank in range(BANKS)]
            # PrioritizeFiFoFilters: the FIFO's banks, in Renode's (inconsistent) sort order; only which
            # banks are in a list matters here, since FMI is never reported
            fs.prioritized = [[b for b in range(BANKS) if fs.fifo[b] == fifo] for fifo in (0, 1)]
        else:
            for mailbox, tir in enumerate(TIR):
                if tir <= offset < tir + 16:
                    index = (offset - tir) // 4
                    self.tx[mailbox][index] = value & 0xFFFFFFFE if index == 0 else value
                    if index == 0 and value & TXRQ:
                        self.transmit(mailbox)
                    return

    def transmit(self, mailbox):
        tir, tdtr, tdlr, tdhr = self.tx[mailbox]
        dlc = tdtr & 0xF
        data = (tdlr.to_bytes(4, "little") + tdhr.to_bytes(4, "little"))[: min(dlc, 8)]
        data = data + bytes(dlc - len(data)) if dlc > 8 else data  # Data = new byte[DLC]: zeros past 8
        # ExtractDataRegisters sets Data only `if(DLC > 0)`: a DLC 0 frame has Data null (hubs.py: fatal)
        frame = frame_of(tir, data if dlc else None)
        if not self.btr & BTR_SILM:
            if not self.machine.can_send(self.name, frame):
                self.esr = (self.esr & ~0x70) | LEC_BIT_DOMINANT
        if self.btr & BTR_LBKM and dlc:  # (DLC 0: Data.Length of null, a NullReferenceException there too)
            self.receive(frame)
        self.tsr |= TSR_DONE[mailbox]


# -- the project's can_ecu firmware ---------------------------------------------------------------------
# firmware/stm32f4/can_ecu.h: its constants, in one place.

CAN_MARKER = b"jumpstarter-renode-fw feature=can-ecu"
CAN1_BASE = 0x40006400
MS = 1_000_000  # SysTick period of this build: 1 ms of virtual time
TICK_MS = 100  # `ticks on`: a tick every 100 SysTicks
PERIODIC_ID, PERIODIC_MS = 0x100, 10
UDS_PHYSICAL, UDS_FUNCTIONAL, UDS_RESPONSE = 0x7E0, 0x7DF, 0x7E8
FORWARD_ID, FORWARD_MASK, FORWARD_OFFSET = 0x200, 0x700, 0x100
FMI_UDS_PHYSICAL, FMI_UDS_FUNCTIONAL, FMI_FORWARD = 0, 1, 2
ISOTP_PAD = 0xAA
N_BS_MS = 1000
STMIN_MAX = 0x7F
VIN = b"JSRENODEVECU00001"
DID_VIN, DID_BUILD_ID = 0xF190, 0xF18C
MSG_MAX = 64
BTR_500K = (2 - 1) | (13 - 1) << 16 | (2 - 1) << 20 | (1 - 1) << 24


class CanEcu:
    """The `can_ecu` build's CAN side, on one machine. Its SysTick runs every 1 ms from boot (`boot_ns`);
    SysTick n is at boot_ns + n ms. Timers count SysTicks: one set at time t to V expires at SysTick
    first_after(t) + V - 1. Bus accesses go through machine.bus_read / bus_write (hooks apply)."""

    def __init__(self, machine, periph, build_id):
        self.machine, self.periph, self.build_id = machine, periph, build_id
        self.periodic_n = PERIODIC_MS  # SysTick of the next periodic frame
        self.counter = 0
        self.iso = {"state": "idle", "msg": [], "pos": 0, "seq": 0, "bs": 0, "in_block": 0, "stmin": 0, "due": None}

    def state(self):
        return {"periph": self.periph, "periodic_n": self.periodic_n, "counter": self.counter, "iso": self.iso}

    @classmethod
    def from_state(cls, machine, build_id, st):
        ecu = cls(machine, st["periph"], build_id)
        ecu.periodic_n, ecu.counter, ecu.iso = st["periodic_n"], st["counter"], st["iso"]
        return ecu

    # -- bus ------------------------------------------------------------------------------------------
    def rd(self, offset):
        return self.machine.bus_read(self.periph, offset) if self.periph else 0

    def wr(self, offset, value):
        if self.periph:
            self.machine.bus_write(self.periph, offset, value & 0xFFFFFFFF)

    def init(self):
        """can_ecu_init, at boot after the banner."""
        self.wr(MCR, (self.rd(MCR) & ~MCR_SLEEP) | MCR_INRQ)
        self.wr(MCR, self.rd(MCR) | 1 << 2 | 1 << 6)  # TXFP, ABOM
        self.wr(BTR, BTR_500K)
        self.wr(FMR, self.rd(FMR) | 1)
        self.wr(FA1R, self.rd(FA1R) & ~7)
        self.wr(FM1R, self.rd(FM1R) & ~7)
        self.wr(FS1R, self.rd(FS1R) | 7)
        self.wr(FFA1R, self.rd(FFA1R) & ~7)
        exact = 0x7FF << 21 | 4 | 2
        for bank, (ident, mask) in enumerate(
            ((UDS_PHYSICAL << 21, exact), (UDS_FUNCTIONAL << 21, exact), (FORWARD_ID << 21, FORWARD_MASK << 21 | 6))
        ):
            self.wr(F0R1 + 8 * bank, ident)
            self.wr(F0R1 + 8 * bank + 4, mask)
        self.wr(FA1R, self.rd(FA1R) | 7)
        self.wr(FMR, self.rd(FMR) & ~1)
        self.wr(IER, 1 << 1)
        self.wr(MCR, self.rd(MCR) & ~MCR_INRQ)

    def tx(self, ident, data):
        """can_tx: the first free mailbox (TME is always set in Renode's model)."""
        tsr = self.rd(TSR)
        if not tsr & TME_ALL:
            return False
        mailbox = 0 if tsr & 1 << 26 else 1 if tsr & 1 << 27 else 2
        data = bytes(data[:8])
        padded = data + bytes(8 - len(data))
        self.wr(TIR[mailbox] + 4, len(data))
        self.wr(TIR[mailbox] + 8, int.from_bytes(padded[:4], "little"))
        self.wr(TIR[mailbox] + 12, int.from_bytes(padded[4:], "little"))
        self.wr(TIR[mailbox], ident << 21 | TXRQ)
        return True

    # -- interrupts -----------------------------------------------------------------------------------
    def irq(self):
        model = self.machine.cans.get(self.periph) if self.periph else None
        return model is not None and model.irq_rx(0)

    def rx_isr(self, now_ns, console):
        """can1_rx0_handler: each frame dispatched by the FMI read from CAN_RDT0R."""
        while self.rd(RF0R) & 3:
            rir, rdtr, low, high = self.rd(RIR[0]), self.rd(RDTR[0]), self.rd(RLR[0]), self.rd(RHR[0])
            self.wr(RF0R, RF_RFOM)
            for _ in range(20000):
                if not self.rd(RF0R) & RF_RFOM:
                    break
            ident, dlc, fmi = (rir >> 21) & 0x7FF, min(rdtr & 0xF, 8), (rdtr >> 8) & 0xFF
            data = (low.to_bytes(4, "little") + high.to_bytes(4, "little"))[:dlc]
            if fmi == FMI_UDS_PHYSICAL:
                self.uds_frame(data, False, now_ns)
            elif fmi == FMI_UDS_FUNCTIONAL:
                self.uds_frame(data, True, now_ns)
            elif fmi == FMI_FORWARD:
                if console:
                    line = "can: rx %03X#%s fmi=%d\r\n" % (ident, data.hex().upper(), FMI_FORWARD)
                    self.machine.emit_to(console, line)
                self.tx(ident + FORWARD_OFFSET, data)

    def next_systick_ns(self, boot_ns):
        """When the next SysTick with CAN work is due."""
        due = [self.periodic_n]
        if self.iso["due"] is not None:
            due.append(self.iso["due"])
        return boot_ns + min(due) * MS

    def systick(self, n, now_ns):
        """can_ecu_ms at SysTick n: the periodic frame, then the ISO-TP timer."""
        if n == self.periodic_n:
            self.periodic_n += PERIODIC_MS
            self.tx(PERIODIC_ID, bytes([self.counter & 0xFF]) + bytes(7))
            self.counter = (self.counter + 1) & 0xFF
        iso = self.iso
        if iso["due"] == n:
            iso["due"] = None
            if iso["state"] == "wait_fc":
                iso["state"] = "idle"  # N_Bs timeout
            elif iso["state"] == "sending":
                self.send_consecutive(True, now_ns)

    # -- ISO-TP ---------------------------------------------------------------------------------------
    def timer(self, value, now_ns):
        """isotp.timer_ms = value, set at now_ns: the SysTick it runs out at."""
        boot = self.machine.fw.boot_ns
        self.iso["due"] = (now_ns - boot) // MS + 1 + value - 1

    def frame(self, payload):
        self.tx(UDS_RESPONSE, bytes(payload) + bytes([ISOTP_PAD]) * (8 - len(payload)))

    def send_consecutive(self, on_tick, now_ns):
        iso = self.iso
        while iso["state"] == "sending":
            chunk = iso["msg"][iso["pos"] : iso["pos"] + 7]
            self.frame([0x20 | iso["seq"] & 0xF, *chunk])
            iso["pos"] += len(chunk)
            iso["seq"] += 1
            if iso["pos"] >= len(iso["msg"]):
                iso["state"], iso["due"] = "idle", None
            else:
                iso["in_block"] += 1
                if iso["bs"] and iso["in_block"] == iso["bs"]:
                    iso["state"] = "wait_fc"
                    self.timer(N_BS_MS, now_ns)
                elif iso["stmin"]:
                    self.timer(iso["stmin"] + (0 if on_tick else 1), now_ns)
                    return

    def send(self, msg, now_ns):
        """isotp_send."""
        iso = self.iso
        if len(msg) <= 7:
            iso["state"], iso["due"] = "idle", None
            self.frame([len(msg), *msg])
            return
        msg = list(msg[:MSG_MAX])
        iso.update(msg=msg, pos=6, seq=1, state="wait_fc")
        self.timer(N_BS_MS, now_ns)
        self.frame([0x10 | len(msg) >> 8, len(msg) & 0xFF, *msg[:6]])

    def flow_control(self, data, now_ns):
        iso = self.iso
        if iso["state"] != "wait_fc" or len(data) < 3:
            return
        status = data[0] & 0xF
        if status == 0:
            iso["bs"], iso["in_block"] = data[1], 0
            stmin = data[2]
            iso["stmin"] = stmin if stmin <= 0x7F else 1 if 0xF1 <= stmin <= 0xF9 else STMIN_MAX
            iso["state"], iso["due"] = "sending", None
            self.send_consecutive(False, now_ns)
        elif status == 1:
            self.timer(N_BS_MS, now_ns)
        else:
            iso["state"], iso["due"] = "idle", None

    # -- UDS ------------------------------------------------------------------------------------------
    def uds_frame(self, data, functional, now_ns):
        if not data:
            return
        kind = data[0] >> 4
        if kind == 0:
            length = data[0] & 0xF
            if 1 <= length <= 7 and length < len(data):
                self.uds_request(bytes(data[1 : 1 + length]), now_ns)
        elif kind == 3 and not functional:
            self.flow_control(data, now_ns)

    def negative(self, sid, nrc, now_ns):
        self.send([0x7F, sid, nrc], now_ns)

    def subfunction_ok(self, req, supported, now_ns):
        if len(req) < 2 or (supported and len(req) != 2):
            self.negative(req[0], 0x13, now_ns)
            return False
        if not supported:
            self.negative(req[0], 0x12, now_ns)
            return False
        return True

    def uds_request(self, req, now_ns):
        sid = req[0]
        if sid == 0x10:
            sub = req[1] & 0x7F if len(req) >= 2 else 0
            if self.subfunction_ok(req, sub in (0x01, 0x03), now_ns) and not req[1] & 0x80:
                self.send([0x50, sub, 0x00, 0x32, 0x01, 0xF4], now_ns)
        elif sid == 0x3E:
            if self.subfunction_ok(req, len(req) >= 2 and req[1] & 0x7F == 0, now_ns) and not req[1] & 0x80:
                self.send([0x7E, 0x00], now_ns)
        elif sid == 0x22:
            if len(req) != 3:
                self.negative(0x22, 0x13, now_ns)
                return
            did = req[1] << 8 | req[2]
            value = VIN if did == DID_VIN else self.build_id if did == DID_BUILD_ID else None
            if value is None:
                self.negative(0x22, 0x31, now_ns)
                return
            self.send([0x62, req[1], req[2], *value][:MSG_MAX], now_ns)
        else:
            self.negative(sid, 0x11, now_ns)

    # -- console ----------------------------------------------------------------------------------------
    def console_line(self, line, console):
        """can_send_on: `can send <ID>#<DATA>` (1-3 hex digits <= 7FF; 0-8 bytes), else `can: bad frame`."""
        if not line.startswith(b"can send") or (len(line) > 8 and line[8:9] != b" "):
            return
        rest = line[9:].decode("latin-1")
        ident, sep, data = rest.partition("#")
        hexdigits = "0123456789abcdefABCDEF"
        good = (
            1 <= len(ident) <= 3
            and all(c in hexdigits for c in ident)
            and int(ident, 16) <= 0x7FF
            and sep
            and len(data) % 2 == 0
            and len(data) <= 16
            and all(c in hexdigits for c in data)
        )
        if not good:
            if console:
                self.machine.emit_to(console, "can: bad frame\r\n")
            return
        self.tx(int(ident, 16), bytes.fromhex(data))
