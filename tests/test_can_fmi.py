"""The filter match index the driver's read hook gives an STMCAN (inside_renode/can.py), against RM0090's
rules: numbering per FIFO over the banks assigned to it (active or not), 4 filters in a 16-bit list bank, 2
in a 16-bit mask or 32-bit list bank, 1 in a 32-bit mask bank; priority 32-bit before 16-bit, list before
mask, then the lowest number. The helper runs in Renode's IronPython; its pure functions are taken out of
the file here (the rest needs Renode's .NET types)."""

from __future__ import annotations

import ast

from jumpstarter_driver_renode.features.base import helper_script

PURE = ("_bit", "_filters_of_bank", "silicon_fmi")


def _functions() -> dict:
    tree = ast.parse(helper_script("can.py").read_text())
    chosen = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in PURE]
    namespace: dict = {}
    exec(compile(ast.Module(body=chosen, type_ignores=[]), "can.py", "exec"), namespace)
    return namespace


silicon_fmi = _functions()["silicon_fmi"]


def rir(ident: int, extended: bool = False, remote: bool = False) -> int:
    """CAN_RIxR of a received frame (STID 31:21, EXID 20:3, IDE 2, RTR 1)."""
    base = ident << 3 if extended else ident << 21
    return base | (4 if extended else 0) | (2 if remote else 0)


def half(ident: int) -> int:
    """A 16-bit filter word for a standard id (STID 15:5, RTR 4, IDE 3, EXID 17:15 in 2:0)."""
    return ident << 5


def registers(banks: dict[int, tuple[bool, bool, int, int, int, bool]]):
    """banks: number -> (32-bit scale, list mode, FIFO, FR1, FR2, active)."""
    fm1r = sum(1 << b for b, (_, lst, *_rest) in banks.items() if lst)
    fs1r = sum(1 << b for b, (wide, *_rest) in banks.items() if wide)
    ffa1r = sum(1 << b for b, (_, _, fifo, *_rest) in banks.items() if fifo)
    fa1r = sum(1 << b for b, (*_rest, active) in banks.items() if active)
    count = max(banks) + 1
    return (fm1r, fs1r, ffa1r, fa1r, count, lambda b: banks[b][3:5] if b in banks else (0, 0))


def test_32_bit_mask_banks_number_one_filter_each():
    regs = registers(
        {
            0: (True, False, 0, rir(0x7E0), 0xFFE00006, True),
            1: (True, False, 0, rir(0x7DF), 0xFFE00006, True),
            2: (True, False, 0, rir(0x200), 0xE0000006, True),
        }
    )
    assert [silicon_fmi(rir(i), 0, regs) for i in (0x7E0, 0x7DF, 0x2AB, 0x123)] == [0, 1, 2, None]


def test_16_bit_banks_number_the_low_half_first_and_check_both_mask_filters():
    # bank 0, 16-bit mask: filter 0 = FR1 (id 0x100 / mask in the high half), filter 1 = FR2 (0x200 / all)
    # bank 1, 16-bit list: filters 2..5 = FR1 low, FR1 high, FR2 low, FR2 high
    full = 0xFFE0 << 16
    regs = registers(
        {
            0: (False, False, 0, full | half(0x100), full | half(0x200), True),
            1: (False, True, 0, half(0x301) << 16 | half(0x300), half(0x303) << 16 | half(0x302), True),
        }
    )
    got = [silicon_fmi(rir(i), 0, regs) for i in (0x100, 0x200, 0x300, 0x301, 0x302, 0x303)]
    assert got == [0, 1, 2, 3, 4, 5]


def test_numbering_is_per_fifo_counts_inactive_banks_and_priority_wins():
    regs = registers(
        {
            0: (True, False, 1, rir(0x7E0), 0xFFE00006, True),  # FIFO 1: not counted for FIFO 0
            1: (True, True, 0, rir(0x111), rir(0x222), False),  # inactive: numbered 0 and 1, never matches
            2: (False, False, 0, 0x0000 << 16 | half(0x123), 0, True),  # 16-bit mask, mask 0: matches all (2)
            3: (True, True, 0, rir(0x123), rir(0x124), True),  # 32-bit list: 4 and 5
        }
    )
    assert silicon_fmi(rir(0x7E0), 1, regs) == 0
    assert silicon_fmi(rir(0x111), 0, regs) == 2  # the inactive bank's id falls to the catch-all
    assert silicon_fmi(rir(0x124), 0, regs) == 5  # a 32-bit list filter before the 16-bit catch-all (2)
    assert silicon_fmi(rir(0x7E0), 0, regs) == 2


def test_ide_and_rtr_take_part_when_the_mask_says_so():
    regs = registers({0: (True, False, 0, rir(0x100), 0xFFE00006, True)})
    assert silicon_fmi(rir(0x100, remote=True), 0, regs) is None
    assert silicon_fmi(rir(0x100 << 18, extended=True), 0, regs) is None
    assert silicon_fmi(rir(0x100), 0, regs) == 0
