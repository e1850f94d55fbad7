"""Where the emulated CPU starts, and what the stand-in plays as the firmware it runs.

The CPU start model follows infra `Cores/Arm-M/CortexM.cs` (InitPCAndSP, VectorTableOffset, Reset)
and `Cores/RiscV/BaseRiscV.cs` (ResetVector), as measured on Renode 1.16.1:
- `LoadELF` on a Cortex-M leaves VTOR alone; at start, a VTOR nobody set is guessed from the ELF's
  lowest section, then SP and PC are read from the vector table there. `LoadBinary`/`LoadHEX` give
  no such guess: VTOR stays 0, and a board without memory there halts with
  `PC does not lay in memory or PC and SP are equal to zero. CPU was halted.`
- a reset forgets VTOR and the PC (Cortex-M) or puts PC back at the reset vector (RISC-V), and the
  ELF guess with it: after `machine Reset` without a `reset` macro that reloads the image, a Cortex-M
  reads its vector table at 0 and halts (measured). A halted Cortex-M stays halted across resets.
- `LoadELF` on other cores sets PC to the ELF's entry; `LoadBinary`/`LoadHEX` do not.

Memory holds real bytes (flashmodel.Memory): the stand-in never executes code, it only decides whether
the CPU would start inside written memory, and which of the project's builds is there.
"""

from __future__ import annotations

import re

from flashmodel import Memory  # noqa: F401 (the CPU reads its vectors from it)

# The project's test firmware (firmware/ in this repository) names itself in its boot banner.
PROJECT_MARKER = re.compile(rb"BOOT jumpstarter-renode-fw board=([a-z0-9]+) build=([A-Za-z0-9_-]{1,32})(?:\r\n)?\0")
# board -> (CPU type, console peripheral, console type)
PROJECT_BOARDS = {
    "stm32f4": ("CPU.CortexM", "usart2", "UART.STM32_UART"),
    "fe310": ("CPU.RiscV32", "uart0", "UART.SiFive_UART"),
}
# board -> (button input pin, LED output pin) of the project firmware's LED-follows-button (firmware/README.md):
# PA0 (EXTI0 on both edges) and PD12 on the STM32F4; the FE310 firmware has neither.
PROJECT_GPIOS = {"stm32f4": (("gpioPortA", 0), ("gpioPortD", 12))}
# board -> (bus peripheral, its type): the project firmware's bus (firmware/README.md), USART3 on the
# STM32F4 (enabled at boot like USART2, before the banner); the FE310 firmware has none.
PROJECT_BUS = {"stm32f4": ("usart3", "UART.STM32_UART")}
TICK_NS = 100_000_000  # the project firmware's `ticks on` period: 100 ms of virtual time
LINE_MAX = 120  # the project firmware's line buffer
RISCV_RESET_VECTOR = 0x1000
HEAD = 256


def project_banner(image):
    """(board, banner line) if `image` is the project's test firmware, else None."""
    m = PROJECT_MARKER.search(image)
    if m is None or m.group(1).decode() not in PROJECT_BOARDS:
        return None
    return m.group(1).decode(), m.group(0).rstrip(b"\r\n\0").decode()


class Cpu:
    def __init__(self, cpu_type, log, bus_log=None):
        self.cpu_type = cpu_type
        self.cortex_m = cpu_type.endswith("CortexM")
        self.log = log  # log(level, text) as the CPU
        self.bus_log = bus_log or log  # ... as the system bus
        self.halted = False
        self.reset()

    def reset(self):
        self.vtor = 0
        self.vtor_init = False
        self.pc_written = False
        self.pc = 0 if self.cortex_m else RISCV_RESET_VECTOR

    def set_vtor(self, value, memory):
        self.vtor_init = True
        if not memory.is_memory(value):
            self.log("WARNING", "Tried to set VTOR address at 0x%X which does not lay in memory. Aborted." % value)
            return
        self.vtor = value

    def set_pc(self, value):
        if self.cortex_m and value % 2 == 0:
            self.log("WARNING", "Patching PC 0x%X for Thumb mode." % value)
            value += 1
        self.pc = value
        self.pc_written = True

    def start(self, memory, elf_lowest):
        """Called when the emulation starts running this CPU; whether it runs code of a loaded image."""
        if self.cortex_m and not self.pc_written and not self.halted:
            if not self.vtor_init and elf_lowest is not None:
                self.log("INFO", "Guessing VectorTableOffset value to be 0x%X." % elf_lowest)
                self.set_vtor(elf_lowest, memory)
            pc, sp = self._read(memory, self.vtor + 4), self._read(memory, self.vtor)
            if not memory.is_memory(pc) or (pc == 0 and sp == 0):
                self.log("ERROR", "PC does not lay in memory or PC and SP are equal to zero. CPU was halted.")
                self.halted = True
            else:
                self.log("INFO", "Setting initial values: PC = 0x%X, SP = 0x%X." % (pc, sp))
                self.pc = pc
                self.pc_written = True
        return not self.halted and memory.holds(self.pc & ~1)

    def _read(self, memory, address):
        if not memory.is_memory(address):
            self.bus_log(
                "WARNING", "[cpu: 0x%x] ReadDoubleWord from non existing peripheral at 0x%X." % (self.pc & ~1, address)
            )
        return memory.read_u32(address)

    def show(self, prop):
        """A property as the monitor prints it (measured: `0x80001dc`, `0x08000000`)."""
        if prop == "PC":
            return "0x%x" % (self.pc & ~1 if self.cortex_m else self.pc)
        return "0x%08X" % self.vtor

    def state(self):
        return {
            "vtor": self.vtor,
            "vtor_init": self.vtor_init,
            "pc": self.pc,
            "pc_written": self.pc_written,
            "halted": self.halted,
        }

    @classmethod
    def from_state(cls, cpu_type, log, st):
        cpu = cls(cpu_type, log)
        cpu.vtor, cpu.vtor_init, cpu.pc = st["vtor"], st["vtor_init"], st["pc"]
        cpu.pc_written, cpu.halted = st["pc_written"], st["halted"]
        return cpu
