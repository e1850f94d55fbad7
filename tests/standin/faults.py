"""Fault knobs: STANDIN_* environment variables that make the stand-in fail the ways Renode can.

Environment knobs (read at start; unset = normal behaviour):
  STANDIN_CHUNK_MAX=16                monitor output is written in random 1..N byte chunks
  STANDIN_START_DELAY=<s>             delay before the monitor becomes responsive
  STANDIN_EXIT_AT_START=<code>        print a "Fatal error:" crash text on stderr, exit <code>
  STANDIN_CRASH_ON=<word>             a command line starting with <word>: crash text on stderr,
                                      os._exit(134) mid-command, nothing more on stdout
  STANDIN_HANG_ON=<word>              ... stop answering entirely (process stays alive)
  STANDIN_HALF_REPLY_ON=<word>        ... echo and half of the reply, then stall forever
  STANDIN_CLOSE_ON=<word>             ... close stdout / the monitor socket, stay alive
  STANDIN_CRASH_AFTER_START=<s>       crash (exit 134) <s> seconds after `start`
  STANDIN_RUNFOR_DELAY=<s>            `emulation RunFor` blocks the monitor <s> real seconds (real
                                      Renode took ~7 s for RunFor "0.1" with a busy-polling firmware)

Where they act: CHUNK_MAX in transport.OutputQueue; START_DELAY and EXIT_AT_START in the launcher's
main (start_delay, exit_at_start); the four per-command words in shell.Shell.enter; CRASH_AFTER_START
in machines.Emulation (crash_after_start, arm_crash_after); RUNFOR_DELAY in monitor's `emulation
RunFor` (runfor_delay). The version knobs are in versions.py, STANDIN_OFFLINE in downloads.py.
"""

import os
import sys
import threading
import time


def env_word(name):
    return os.environ.get(name) or None


CHUNK_MAX = max(1, int(os.environ.get("STANDIN_CHUNK_MAX", "16")))


def crash(text, code=134):
    sys.stderr.write("Fatal error:\n%s\n   at Antmicro.Renode.StandIn.Crash ()\n" % text)
    sys.stderr.flush()
    os._exit(code)


def hang_forever():
    while True:
        time.sleep(3600)


def exit_at_start():
    """STANDIN_EXIT_AT_START: crash before anything starts."""
    exit_code = os.environ.get("STANDIN_EXIT_AT_START")
    if exit_code:
        crash("System.TypeInitializationException: stand-in failure at start", int(exit_code))


def start_delay():
    """STANDIN_START_DELAY: the monitor becomes responsive this much later."""
    delay = os.environ.get("STANDIN_START_DELAY")
    if delay:
        time.sleep(float(delay))


def crash_after_start():
    """STANDIN_CRASH_AFTER_START, as read when an Emulation is created (None when unset)."""
    return os.environ.get("STANDIN_CRASH_AFTER_START")


def arm_crash_after(crash_after):
    """Crashes the process `crash_after` seconds from now (the emulation has just started)."""
    delay = float(crash_after)
    timer = threading.Timer(delay, lambda: crash("System.AccessViolationException: stand-in crash after start"))
    timer.daemon = True
    timer.start()


def runfor_delay():
    """STANDIN_RUNFOR_DELAY: `emulation RunFor` keeps the monitor blocked this many real seconds."""
    # The monitor is blocked meanwhile: lines typed now are echoed and run only afterwards.
    delay = float(os.environ.get("STANDIN_RUNFOR_DELAY") or 0)
    if delay > 0:
        time.sleep(delay)
