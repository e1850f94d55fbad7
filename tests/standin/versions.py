"""The emulated Renode version: build string, version switches, banner texts and AntShell colours.

STANDIN_RENODE_VERSION and STANDIN_RENODE_BUILD (read at start) choose what is emulated.
"""

import os
import re

VERSION = os.environ.get("STANDIN_RENODE_VERSION", "1.16.1")
VPARTS = tuple(int(x) for x in re.findall(r"\d+", VERSION)[:4])
V = VPARTS[:3]
BUILD = os.environ.get("STANDIN_RENODE_BUILD", "5a3ad2a5-202402161200")
IS_116 = V >= (1, 16, 0)
# infra src/Emulator/Main/Utilities/SocketServerProvider.cs: 1.13..1.15.3 read and drop 9 bytes.
SWALLOW9 = (1, 13, 0) <= V < (1, 16, 0)
DISABLE_GUI_OK = V >= (1, 15, 0)  # infra commit 9525970ce, first in 1.15.0
SNAPSHOT_POSITIONAL = V >= (1, 15, 2)  # infra src/UI/CommandLineInterface.cs (10320590c)


def banner_version():
    # infra src/Emulator/Main/Core/EmulationManager.cs VersionString: 4-part <=1.15, 3-part 1.16
    if IS_116:
        return "Renode, version %d.%d.%d (%s)" % (V + (BUILD,))  # noqa: RUF005 - moved as is
    return "Renode, version %s (%s)" % (VERSION, BUILD)


def long_version():
    # renode src/Renode/Program.cs (1.16) LongVersionString; 1.14 prints VersionString
    # (infra src/UI/CommandLineInterface.cs Run: Console.Out.WriteLine(VersionString)).
    if not IS_116:
        return banner_version()
    rev = VPARTS[3] if len(VPARTS) > 3 else 0
    return "Renode v%d.%d.%d.%d\n  build: %s\n  build type: Release\n  runtime: .NET 8.0.11" % (V + (rev, BUILD))  # noqa: RUF005 - moved as is


# AntShell colours (antshell Terminal/NavigableTerminalEmulator.cs). The same bytes in the real
# 1.14.0 (socket) and 1.16.1 (--console) transcripts: errors `ESC[;031m` (not `ESC[91m`, as an
# earlier reading of the 1.16 sources suggested), green `ESC[;032m`, the `(monitor)` prompt
# `ESC[31;1m`, a machine's prompt `ESC[33;1m`. C_YELLOW is not in any transcript.
C_ERR, C_GREEN, C_DARKRED, C_DARKYELLOW, C_YELLOW = "\x1b[;031m", "\x1b[;032m", "\x1b[31;1m", "\x1b[33;1m", "\x1b[;033m"
C_RESET = "\x1b[0m"
