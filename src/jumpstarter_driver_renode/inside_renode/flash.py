# Runs inside Renode's monitor Python (IronPython 2.7), in the scope expect.py shares (it calls `Wait`,
# `_now_ns`, `_exact_now_ns`, `_paused`, `_peripheral`, `Refusal`). Keep it valid for Python 2.7 and 3.
#
# Non-volatile memory (features/nvm.py). A MappedMemory allocates its segments when first touched and
# fills them with its ResetByte (0 by default, but erased flash reads 0xFF): the driver sets ResetByte
# before anything touches the memory, and moves only touched segments (a 16th of the memory, 64 KiB to
# 16 MiB) to and from the host: 3 of 128 KiB for the counter firmware on a 2 MiB STM32F4 flash, one of
# 16 MiB for a small image in the FE310's 512 MiB XIP window.
#
# File format (one file per memory, written to a path the driver renames into place):
#   b"JSNVM1", segment size (u32 LE), segment count (u32 LE), then per touched segment:
#   its index (u32 LE) and its bytes.
#
# Power cuts: a write hook on the machine's flash controller counts program and erase operations; at
# the Nth it keeps the operation from taking effect, copies the memories as they are at that instant,
# and pauses the machine right after the write (precise pause), so what the driver saves at power off
# is exactly the flash of that instant however far the emulation ran on. Arguments arrive as decimal
# strings or peripheral paths the driver checked: nothing a client sends is ever code.

from System import Array, BitConverter, Byte, Func, Int64, UInt32
from System.IO import File, FileMode, FileStream

NVM_MAGIC = "JSNVM1"
ERASED = 0xFF
# Flash controller models whose operations can be counted: type name -> (control register offset, PG
# bit, STRT bit). STM32F4 (RM0090): FLASH_CR at 0x10; a program operation begins when the firmware sets
# PG (ST's HAL sets it once per word), an erase when it sets STRT.
CONTROLLERS = {"STM32F4_FlashController": (0x10, 1 << 0, 1 << 16)}
_cut_copies = {}  # (machine, memory path) -> [(segment index, bytes)] taken at a power cut


def _memory(machine, name):
    members = ("IsTouched", "SegmentSize", "ResetByte", "ZeroAll")
    return _peripheral(machine, name, "a memory (Memory.MappedMemory)", members)  # noqa: F821


def _segments(memory):
    size = memory.SegmentSize
    return [(i, memory.ReadBytes(Int64(i) * size, size)) for i in range(memory.SegmentCount) if memory.IsTouched(i)]


def mc_jumpstarter_nvm_blank(name):
    """Make the memory read as erased flash (what the firmware has never written reads 0xFF)."""
    machine = monitor.Machine  # noqa: F821 (set by Renode)
    memory = _memory(machine, name)
    _forget_cut(machine, name)
    memory.ResetByte = ERASED
    memory.ZeroAll()  # fills the touched segments with ResetByte; the others get it when touched
    print("jumpstarter-nvm blank %d" % memory.Size)


def mc_jumpstarter_nvm_load(name, path):
    """Blank the memory, then put back the segments saved in `path`."""
    machine = monitor.Machine  # noqa: F821
    memory = _memory(machine, name)
    data = File.ReadAllBytes(path)  # a .NET byte[]: sliced by WriteBytes, never copied into Python
    size = memory.SegmentSize
    magic = "".join(chr(data[i]) for i in range(min(6, data.Length)))
    if magic != NVM_MAGIC or data.Length < 14:
        raise Refusal("bad-file", "%s is not a memory image the driver wrote" % path)  # noqa: F821
    if BitConverter.ToUInt32(data, 6) != size or BitConverter.ToUInt32(data, 10) != memory.SegmentCount:
        raise Refusal("bad-file", "%s was saved from a memory of another layout" % path)  # noqa: F821
    _forget_cut(machine, name)
    memory.ResetByte = ERASED
    memory.ZeroAll()
    offset, loaded = 14, 0
    while offset < data.Length:
        index = BitConverter.ToUInt32(data, offset) if offset + 4 <= data.Length else memory.SegmentCount
        if index >= memory.SegmentCount or offset + 4 + size > data.Length:
            raise Refusal("bad-file", "%s is cut short or damaged" % path)  # noqa: F821
        memory.WriteBytes(Int64(index) * size, data, offset + 4, size)
        offset, loaded = offset + 4 + size, loaded + 1
    print("jumpstarter-nvm loaded %d" % loaded)


def mc_jumpstarter_nvm_save(name, path):
    """Write the memory's touched segments to `path` (as they were at a power cut, if one happened)."""
    machine = monitor.Machine  # noqa: F821
    memory = _memory(machine, name)
    segments = _cut_copies.pop((machine, name), None)
    when = "cut"
    if segments is None:
        segments, when = _segments(memory), "now"
    stream = FileStream(path, FileMode.Create)
    try:
        head = Array[Byte]([ord(c) for c in NVM_MAGIC])
        stream.Write(head, 0, head.Length)
        for number in (memory.SegmentSize, memory.SegmentCount):
            stream.Write(BitConverter.GetBytes(UInt32(number)), 0, 4)
        for index, chunk in segments:
            stream.Write(BitConverter.GetBytes(UInt32(index)), 0, 4)
            stream.Write(chunk, 0, chunk.Length)
    finally:
        stream.Close()
    print("jumpstarter-nvm saved %s %d" % (when, len(segments)))


def _controller(machine):
    from Antmicro.Renode.Peripherals import MTD  # here: a Renode without these models still runs the rest

    for name, registers in CONTROLLERS.items():
        kind = getattr(MTD, name, None)
        for peripheral in machine.GetPeripheralsOfType[kind]() if kind is not None else ():
            return peripheral, registers
    raise Refusal(  # noqa: F821
        "unsupported",
        "counting flash operations needs a flash controller model the driver knows (%s); this machine has none"
        % ", ".join(sorted(CONTROLLERS)),
    )


def _forget_cut(machine, name=None):
    for key in [key for key in _cut_copies if key[0] is machine and (name is None or key[1] == name)]:
        del _cut_copies[key]


def mc_jumpstarter_power_cut(operation, names, timeout_ns, host_ms):
    """Run until the machine's `operation`th flash operation from now, and cut power just before it.

    Prints `jumpstarter-cut <cut|timeout|host-timeout> <operations counted> <ns> <now ns>`.
    """
    machine = monitor.Machine  # noqa: F821
    controller, (control, pg, strt) = _controller(machine)
    memories = [(name, _memory(machine, name)) for name in names.split(",") if name]
    wanted = int(operation)
    state = {"count": 0, "previous": 0}
    copies = {}  # published only if this call ends in a cut
    wait = Wait(machine, _paused())  # noqa: F821
    _forget_cut(machine)

    def hook(value, offset):
        value = int(value)
        if offset != control or wait.result is not None:
            return UInt32(value)
        starts = bool(value & strt) or (bool(value & pg) and not state["previous"] & pg)
        state["previous"] = value
        if starts:
            state["count"] += 1
            if state["count"] == wanted:
                value &= ~strt  # an erase never starts; a program's data write follows after the pause
                for name, memory in memories:
                    copies[(machine, name)] = _segments(memory)
                machine.PauseAndRequestEmulationPause(True)
                wait.finish(("cut", state["count"], _exact_now_ns(machine)))  # noqa: F821
        return UInt32(value)

    bus = machine.SystemBus
    bus.SetHookBeforePeripheralWrite[UInt32](controller, Func[UInt32, Int64, UInt32](hook), None)
    try:
        result = wait.run(timeout_ns, host_ms, lambda: ("timeout", state["count"], _now_ns(machine)))  # noqa: F821
    finally:
        bus.SetHookBeforePeripheralWrite[UInt32](controller, None, None)
    outcome, count, when = result
    if outcome == "cut":
        _cut_copies.update(copies)
    print("jumpstarter-cut %s %d %d %d" % (outcome, count or 0, when, _now_ns(machine)))  # noqa: F821
