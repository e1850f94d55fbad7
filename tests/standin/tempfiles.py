"""Renode's own temporary folder (infra src/Emulator/Main/Utilities/TemporaryFilesManager.cs)."""

import atexit
import os
import shutil
import tempfile

PREFIX = "renode-"
CRASH_SUFFIX = "-crash"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_done = []


def set_up():
    """On first use (TemporaryFilesManager.Instance is made lazily): `$TMPDIR/renode-<pid>` is this
    process's (a leftover of that name is replaced); every other `renode-*` folder there is deleted unless
    its suffix is a live process or it is a crash report. Measured on 1.16.1: untouched after `version`,
    cleaned by the first `LoadPlatformDescription`; the own folder is gone after `quit`."""
    if _done:
        return
    _done.append(True)
    tmp = tempfile.gettempdir()
    own = os.path.join(tmp, PREFIX + str(os.getpid()))
    shutil.rmtree(own, ignore_errors=True)
    os.makedirs(own)
    atexit.register(shutil.rmtree, own, True)  # its finalizer clears it on a normal exit (not on SIGKILL)
    for entry in os.listdir(tmp):
        path = os.path.join(tmp, entry)
        if path == own or not entry.startswith(PREFIX) or entry.endswith(CRASH_SUFFIX) or not os.path.isdir(path):
            continue
        suffix = entry[len(PREFIX) :]
        if suffix.isdigit() and _alive(int(suffix)):
            continue
        shutil.rmtree(path, ignore_errors=True)
