"""Tests that the Renode stand-in (tests/standin/renode) reproduces real Renode bytes.

The expected bytes come from the byte-exact transcripts of real Renode in tests/transcripts/:
`socket-*` (1.14.0, `--port`) and `console-*` (1.16.1, `--console`, the mode the driver uses).
The stand-in emulates 1.16.1 by default; the 1.14 tests ask for 1.14.0.4910 explicitly.
"""

import ast
import hashlib
import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jumpstarter_driver_renode.features import expect

HERE = Path(__file__).parent
STANDIN = HERE / "standin" / "renode"
TRANSCRIPTS = HERE / "transcripts"
# Version and build suffix of the Renodes that recorded the transcripts.
RENODE_114 = {"STANDIN_RENODE_VERSION": "1.14.0.4910", "STANDIN_RENODE_BUILD": "-202611250243"}
RENODE_116 = {"STANDIN_RENODE_VERSION": "1.16.1", "STANDIN_RENODE_BUILD": "-202611301012"}
IAC_14 = b"\xff\xfd\x00\xff\xfb\x01\xff\xfb\x03\xff\xfc\x22"
TIMEOUT = 10.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(*args, version, env=None, stdin=subprocess.DEVNULL):
    e = dict(os.environ, **version)
    e.update(env or {})
    return subprocess.Popen(
        [sys.executable, str(STANDIN), *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e
    )


def kill(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(TIMEOUT)
    for f in (proc.stdout, proc.stderr, proc.stdin):
        if f:
            f.close()


def read_fd_until(fd, pred, timeout=TIMEOUT, buf=b""):
    """Reads from fd until pred(buf) is true; fails on timeout."""
    deadline = time.monotonic() + timeout
    while not pred(buf):
        left = deadline - time.monotonic()
        assert left > 0, "timeout; got %r" % buf[-400:]
        r, _, _ = select.select([fd], [], [], left)
        if r:
            d = os.read(fd.fileno() if hasattr(fd, "fileno") else fd, 65536)
            if not d:
                break
            buf += d
    return buf


def wait_log_line(proc, pattern, timeout=TIMEOUT):
    buf = read_fd_until(proc.stdout, lambda b: re.search(pattern, b) is not None, timeout)
    return buf


def connect(port, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            return s
        except OSError:
            assert time.monotonic() < deadline, "could not connect"
            time.sleep(0.05)


def recv_exact(sock, n, timeout=TIMEOUT):
    buf = b""
    sock.settimeout(timeout)
    while len(buf) < n:
        d = sock.recv(n - len(buf))
        if not d:
            break
        buf += d
    return buf


def recv_until(sock, pred, timeout=TIMEOUT, buf=b""):
    deadline = time.monotonic() + timeout
    while not pred(buf):
        left = deadline - time.monotonic()
        assert left > 0, "timeout; got %r" % buf[-400:]
        sock.settimeout(left)
        d = sock.recv(4096)
        if not d:
            break
        buf += d
    return buf


def parse_transcript(name):
    """[(direction, bytes)] from a *.txt transcript ('>>' sent, '<<' received)."""
    steps = []
    for line in (TRANSCRIPTS / name).read_text().splitlines():
        m = re.match(r"\s*[\d.]+ (>>|<<|--) (b.*?)(?:\s+\[\d+ reads?\])?$", line)
        if m:
            eof = "<EOF>" in m.group(2)
            data = ast.literal_eval(m.group(2).replace("<EOF>", ""))
            steps.append((m.group(1), data, eof))
    return steps


def start_socket_standin(*extra, version, env=None):
    port = free_port()
    proc = spawn("--disable-xwt", "-P", str(port), *extra, version=version, env=env)
    wait_log_line(proc, rb"Monitor available in telnet mode on port %d" % port)
    return proc, port


# ---------------------------------------------------------------------------------------------
# Transcript replays


@pytest.mark.parametrize("name,flags", [("socket-plain.txt", ["--plain"]), ("socket-color.txt", [])])
def test_transcript_bytes(name, flags):
    tmp = tempfile.mkdtemp()
    proc, port = start_socket_standin(*flags, version=RENODE_114)
    try:
        sock = connect(port)
        steps = [s for s in parse_transcript(name) if s[0] != "--"]
        assert steps[0][0] == "<<"
        assert recv_exact(sock, len(steps[0][1])) == steps[0][1] == IAC_14
        after_runfor = False
        for direction, data, eof in steps[1:]:
            data = data.replace(b"<tmp>", tmp.encode())
            if direction == ">>":
                sock.sendall(data)
                continue
            if after_runfor and data.startswith(b"currentTime"):
                # virtual time after RunFor depends on host speed: compare the shape only
                prompt = data[data.rfind(b"(monitor) ") :]  # with the colour reset when the session has colours
                got = recv_until(sock, lambda b, prompt=prompt: b.endswith(prompt))
                assert re.sub(rb"\d\d:\d\d:\d\d\.\d{6}", b"T", got) == re.sub(rb"\d\d:\d\d:\d\d\.\d{6}", b"T", data)
                continue
            if data.startswith(b"emulation RunFor"):
                after_runfor = True
            got = recv_exact(sock, len(data))
            assert got == data
            if eof:
                assert recv_until(sock, lambda b: False, timeout=5) == b""
        sock.close()
        assert proc.wait(TIMEOUT) == 0
        assert os.path.exists(os.path.join(tmp, "pty-link")) is False  # symlink removed on quit
    finally:
        kill(proc)


def test_reconnect_swallows_nine_bytes_each_time():
    proc, port = start_socket_standin("--plain", version=RENODE_114)
    try:
        s1 = connect(port)
        assert recv_exact(s1, 12) == IAC_14
        s1.sendall(b"\n")
        s1.sendall(b"version\n")  # 9 bytes in all: swallowed, then the queued banner arrives
        expected = b"Renode, version 1.14.0.4910 (-202611250243)\n\r\n\r(monitor) "
        assert recv_exact(s1, len(expected)) == expected
        s1.close()
        s2 = connect(port)
        assert recv_exact(s2, 12) == IAC_14
        s2.sendall(b"version\n")  # 8 bytes: still inside the 9-byte swallow, no reply
        s2.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s2.recv(1)
        s2.sendall(b"Xversion\n")  # 'X' completes the 9 bytes
        got = recv_until(s2, lambda b: b.endswith(b"(monitor) "))
        assert got == b"version\n\rRenode, version 1.14.0.4910 (-202611250243)\r\n\r(monitor) "
        s2.close()
    finally:
        kill(proc)


def test_one_client_at_a_time_and_queued_output():
    proc, port = start_socket_standin("--plain", "-e", 'echo "from -e"', version=RENODE_114)
    try:
        s1 = connect(port)
        assert recv_exact(s1, 12) == IAC_14
        s2 = connect(port)  # completes in the kernel (backlog 1) but gets nothing
        s2.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s2.recv(1)
        s1.sendall(b"\xff\xfb\x00\xff\xfd\x01\xff\xfd\x03")
        got = recv_until(s1, lambda b: b.count(b"(monitor) ") == 2)
        assert got == (
            b'Renode, version 1.14.0.4910 (-202611250243)\n\r\n\r(monitor) echo "from -e"\n\rfrom -e\r\r\n(monitor) '
        )
        s1.sendall(b'echo "queued"\n')
        recv_until(s1, lambda b: b.endswith(b"(monitor) "))
        s1.close()
        # the second client is served now; s2 already sent nothing, so send the 9 bytes
        assert recv_exact(s2, 12, timeout=TIMEOUT) == IAC_14
        s2.sendall(b"\xff\xfb\x00\xff\xfd\x01\xff\xfd\x03")
        s2.sendall(b'echo "next"\n')
        got = recv_until(s2, lambda b: b.endswith(b"(monitor) "))
        assert got == b'echo "next"\n\rnext\r\r\n(monitor) '
        s2.close()
        # output produced while nobody is connected is delivered to the next client
        s3 = connect(port)
        assert recv_exact(s3, 12) == IAC_14
        s3.sendall(b"\xff\xfb\x00\xff\xfd\x01\xff\xfd\x03" + b"quit\n")
        assert recv_until(s3, lambda b: False, timeout=5) == b"quit\n\rRenode is quitting\r\n\r"
        assert proc.wait(TIMEOUT) == 0
    finally:
        kill(proc)


def test_port_zero_logs_zero_and_binds_free_port():
    proc = spawn("--disable-xwt", "--plain", "-P", "0", version=RENODE_114)
    try:
        wait_log_line(proc, rb"Monitor available in telnet mode on port 0\n")
    finally:
        kill(proc)


# ---------------------------------------------------------------------------------------------
# Real Renode 1.16.1 in --console mode (the driver's mode), replayed byte for byte

VIRTUAL_AND_REAL_TIME = re.compile(rb"(Current (?:virtual|real) time: )\d\d:\d\d:\d\d\.\d{9}")


# A Cortex-M image at 0x08000000: vector table (initial SP 0x20020000, reset vector with the Thumb
# bit set pointing just after the table), then `b .`.
CORTEX_M_CODE = struct.pack("<II", 0x20020000, 0x08000008 | 1) + b"\xfe\xe7"


def cortex_m_elf():
    return make_elf(40, payload=CORTEX_M_CODE)  # EM_ARM


def transcript_args(name, tmp):
    """The launcher arguments in the transcript's header (`# renode <args>; ...`)."""
    header = (TRANSCRIPTS / name).read_text().splitlines()[0]
    m = re.match(r"# renode (.*?);", header)
    return m.group(1).replace("<tmp>", tmp).split()


@pytest.mark.parametrize("name", ["console-plain.txt", "console-color.txt"])
def test_console_transcript_bytes_116(name, tmp_path):
    tmp = str(tmp_path)
    (tmp_path / "renode.config").write_text("")
    (tmp_path / "fw.elf").write_bytes(cortex_m_elf())
    args = transcript_args(name, tmp)
    assert args[:3] == ["--console", "--disable-xwt", "--hide-log"]
    assert args[-2:] == ["--config", tmp + "/renode.config"]
    assert ("--plain" in args) == ("plain" in name)
    gdb = b"StartGdbServer %d" % free_port()  # the recorded 3333 may be taken here

    def here(data):
        return data.replace(b"<tmp>", tmp.encode()).replace(b"StartGdbServer 3333", gdb)

    # RunFor blocks the monitor (real Renode took 7 s for RunFor "0.1"): the five lines sent
    # meanwhile must be echoed and answered only afterwards, in one block, as recorded.
    proc = spawn(*args, version=RENODE_116, env={"STANDIN_RUNFOR_DELAY": "0.5"}, stdin=subprocess.PIPE)
    try:
        buf = b""
        ended = {}
        for direction, data, _ in parse_transcript(name):
            if direction == "--":  # EOF, exit code, stderr after `quit`
                key, _, value = data.partition(b" ")
                ended[key.rstrip(b":")] = value
                continue
            data = here(data)
            if direction == ">>":
                proc.stdin.write(data)
                proc.stdin.flush()
                continue
            size = len(data)
            buf = read_fd_until(proc.stdout, lambda b, size=size: len(b) >= size, buf=buf)
            got, buf = buf[:size], buf[size:]
            # virtual and real time depend on the host: compare their shape (nine decimals) only
            assert VIRTUAL_AND_REAL_TIME.sub(rb"\1T", got) == VIRTUAL_AND_REAL_TIME.sub(rb"\1T", data)
        assert set(ended) == {b"EOF", b"exit", b"stderr"}
        assert buf + read_fd_until(proc.stdout, lambda b: False) == b""  # then EOF
        assert proc.wait(TIMEOUT) == int(ended[b"exit"])
        assert proc.stderr.read() == ended[b"stderr"]
    finally:
        kill(proc)


# ---------------------------------------------------------------------------------------------
# Console mode


class Console:
    def __init__(self, *flags, version, env=None):
        self.proc = spawn("--console", "--hide-log", *flags, version=version, env=env, stdin=subprocess.PIPE)
        self.buf = b""

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def until(self, pred):
        self.buf = read_fd_until(self.proc.stdout, pred, buf=self.buf)
        return self.buf

    def take(self, suffix):
        self.until(lambda b: b.endswith(suffix))
        out, self.buf = self.buf, b""
        return out

    def command(self, line, prompt):
        """One monitor line: the raw bytes up to and including the next prompt."""
        self.send(line.encode() + b"\n")
        return self.take(prompt)

    def run(self, line, prompt):
        """One monitor line: its output between the echo and the next prompt, decoded."""
        out = self.command(line, prompt)
        assert out.startswith(line.encode() + b"\n\r"), out
        return out[len(line) + 2 : -len(prompt)].decode()

    def runner(self, prompt, raw=False):
        """`cmd(line, prompt=prompt)`: `run` (or `command`, raw) with a default prompt."""
        return lambda line, prompt=prompt: (self.command if raw else self.run)(line, prompt)


def test_console_mode_basics():
    c = Console("--plain", version=RENODE_114)
    try:
        assert c.take(b"(monitor) ") == b"Renode, version 1.14.0.4910 (-202611250243)\n\r\n\r(monitor) "
        c.send(b"version\r")  # \r is Enter
        assert c.take(b"(monitor) ") == b"version\n\rRenode, version 1.14.0.4910 (-202611250243)\r\n\r(monitor) "
        c.send(b"bogus\n")  # \n is Enter too; errors are raw `...\r\n`
        assert c.take(b"(monitor) ") == b"bogus\n\rNo such command or device: bogus\r\n(monitor) "
        c.send(b"\r\n")  # two Enters: two prompts
        assert c.take(b"(monitor) \n\r(monitor) ") == b"\n\r(monitor) \n\r(monitor) "
        c.send(b'mach create "b1"\n')
        assert c.take(b"(b1) ") == b'mach create "b1"\n\r(b1) '
        c.send(b'garbage\x15echo "x"; bogus; echo "never"\n')  # Ctrl-U, stop at 1st failure
        out = c.take(b"(b1) ")
        assert out == (
            b'garbage\x1b[7D\x1b[Kecho "x"; bogus; echo "never"\n\rx\r\r\nNo such command or device: bogus\r\n(b1) '
        )
        c.send(b"quit\n")
        assert c.proc.wait(TIMEOUT) == 0
        assert c.proc.stdout.read() == b"quit\n\rRenode is quitting\r\n\r"
    finally:
        kill(c.proc)


@pytest.mark.parametrize("version", [RENODE_114, RENODE_116])
def test_console_errors_in_red_and_ctrl_d_quits(version):
    c = Console(version=version)  # 1.14 and 1.16.1 use the same colour codes
    try:
        assert c.take(b"(monitor) \x1b[0m").startswith(b"\x1b[0mRenode, version")
        c.send(b"bogus\n")
        assert c.take(b"\x1b[0m\x1b[31;1m(monitor) \x1b[0m") == (
            b"bogus\n\r\x1b[;031mNo such command or device: bogus\r\n\x1b[0m\x1b[31;1m(monitor) \x1b[0m"
        )
        c.send(b"\x04")
        assert c.proc.wait(TIMEOUT) == 0
    finally:
        kill(c.proc)


def test_without_disable_xwt_falls_back_to_console():
    port = free_port()
    proc = spawn("-P", str(port), "--plain", version=RENODE_114, stdin=subprocess.PIPE)
    try:
        out = read_fd_until(proc.stdout, lambda b: b.endswith(b"(monitor) "))
        assert b"[WARNING] Couldn't start UI - falling back to console mode" in out
        assert b"Monitor available" not in out
        proc.stdin.write(b"q\n")
        proc.stdin.flush()
        assert proc.wait(TIMEOUT) == 0
    finally:
        kill(proc)


# ---------------------------------------------------------------------------------------------
# Launcher flags


def test_version_flag_and_option_errors():
    def run(*args, **env):
        return subprocess.run(
            [sys.executable, str(STANDIN), *args], capture_output=True, timeout=TIMEOUT, env=dict(os.environ, **env)
        )

    p = run("--version", **RENODE_114)
    assert p.returncode == 0 and p.stdout == b"Renode, version 1.14.0.4910 (-202611250243)\n"
    p = run("--version", STANDIN_RENODE_VERSION="1.16.1", STANDIN_RENODE_BUILD="d66b0c2a-202602161205")
    assert p.returncode == 0 and p.stdout.startswith(b"Renode v1.16.1.0\n  build: d66b0c2a-202602161205\n")
    p = run("--version")  # 1.16.1 is the default
    assert p.returncode == 0 and p.stdout.startswith(b"Renode v1.16.1.0\n")
    p = run("--disable-gui", "-P", "0", **RENODE_114)  # an alias of --disable-xwt only from 1.15.0
    assert p.returncode != 0 and b"Unexpected options detected: --disable-gui" in p.stdout
    p = run("--bogus")
    assert p.returncode != 0 and b"Unexpected options detected: --bogus" in p.stdout


def test_exit_at_start_and_crash_on():
    p = subprocess.run(
        [sys.executable, str(STANDIN), "--console"],
        capture_output=True,
        timeout=TIMEOUT,
        env=dict(os.environ, STANDIN_EXIT_AT_START="3"),
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 3 and b"Fatal error:" in p.stderr and b"Renode, version" not in p.stdout
    c = Console("--plain", version=RENODE_114, env={"STANDIN_CRASH_ON": "start"})
    try:
        c.take(b"(monitor) ")
        c.send(b"start\n")
        assert c.proc.wait(TIMEOUT) == 134
        assert b"Fatal error:" in c.proc.stderr.read()
        assert c.proc.stdout.read() == b"start"
    finally:
        kill(c.proc)


# ---------------------------------------------------------------------------------------------
# Platform, PTY UART, loaders, firmware model


def make_elf(e_machine, payload=b"\x00" * 64, truncate=None):
    ehsize, phentsize = 52, 32
    phoff = ehsize
    off = phoff + phentsize
    hdr = b"\x7fELF" + bytes([1, 1, 1]) + b"\x00" * 9
    hdr += struct.pack("<HHIIIIIHHHHHH", 2, e_machine, 1, 0x08000000, phoff, 0, 0, ehsize, phentsize, 1, 40, 0, 0)
    ph = struct.pack("<IIIIIIII", 1, off, 0x08000000, 0x08000000, len(payload), len(payload), 5, 4)
    data = hdr + ph + payload
    return data[:truncate] if truncate else data


def test_firmware_on_pty_uart_and_loader_errors(tmp_path):
    elf = tmp_path / "fw.elf"
    elf.write_bytes(make_elf(40, payload=CORTEX_M_CODE + b"\x00" * 54))  # boots: a valid vector table
    link = tmp_path / "uart"
    c = Console("--plain", version=RENODE_114)
    try:
        c.take(b"(monitor) ")

        cmd = c.runner(b"(stm) ", raw=True)

        cmd('mach create "stm"')
        assert cmd("machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl").endswith(
            b"\n\r(stm) "
        )
        assert cmd('emulation CreateUartPtyTerminal "term" "%s"' % link).endswith(b"\n\r(stm) ")
        assert os.path.islink(link)
        assert cmd('emulation CreateUartPtyTerminal "t2" "%s"' % link).endswith(
            b"File `%s' already exists. Use forceCreate to overwrite it.\r\n(stm) " % str(link).encode()
        )
        assert cmd("connector Connect sysbus.usart2 term").endswith(b"\n\r(stm) ")
        assert b"Parameters did not match the signature\r\n" in cmd("sysbus LoadELF @/nonexistent.elf")
        assert b"Parameters did not match the signature\r\n" in cmd("sysbus LoadBinary @%s" % elf)
        notelf = tmp_path / "x.elf"
        notelf.write_bytes(b"hello world, not an elf")
        assert cmd("sysbus LoadELF @%s" % notelf).endswith(
            b"Error while loading ELF: Could not load ELF from path: %s.\r\n(stm) " % str(notelf).encode()
        )
        assert cmd("sysbus LoadELF @%s" % elf).endswith(b"\n\r(stm) ")
        fd = os.open(str(link), os.O_RDWR | os.O_NOCTTY)
        try:
            assert cmd('emulation RunFor "00:00:02.5"').endswith(b"\n\r(stm) ")
            sha = hashlib.sha256(elf.read_bytes()).hexdigest().encode()
            expected = (
                b"Booting stand-in firmware sha256=" + sha + b" loader=LoadELF uart=usart2\r\ntick 1\r\ntick 2\r\n"
            )
            assert read_fd_until(fd, lambda b: len(b) >= len(expected)) == expected
            os.write(fd, b"hello\r")
            # Input reaches the UART asynchronously (a reader thread, as in Renode): run until it is echoed.
            echoed = b""
            for _ in range(50):
                cmd('emulation RunFor "0.1"')
                if select.select([fd], [], [], 0.05)[0]:
                    echoed = read_fd_until(fd, lambda b: b.endswith(b"\r\n"))
                    break
            assert echoed == b"echo: hello\r\n"
            cmd("start")
            assert cmd("sysbus LoadELF @%s" % elf).endswith(b"Cannot load ELF on an unpaused machine.\r\n(stm) ")
            cmd("pause")
            cmd('macro reset "sysbus LoadELF @%s"' % elf)
            cmd("machine Reset")
            cmd('emulation RunFor "0.1"')
            assert read_fd_until(fd, lambda b: b.endswith(b"usart2\r\n")).startswith(b"Booting stand-in")
        finally:
            os.close(fd)
        c.send(b"quit\n")
        assert c.proc.wait(TIMEOUT) == 0
        assert not os.path.lexists(link)
    finally:
        kill(c.proc)


def test_gdb_server_reports_the_stop_on_connect_and_answers_question_mark():
    c = Console("--plain", version=RENODE_114)
    port = free_port()
    try:
        c.take(b"(monitor) ")
        c.send(b'mach create "g"; machine LoadPlatformDescription @platforms/cpus/sifive-fe310.repl\n')
        c.take(b"(g) ")
        c.send(b"machine StartGdbServer %d false\n" % port)
        c.take(b"(g) ")
        s = connect(port)
        s.sendall(b"$?#3f")
        # The stop the connection caused, unasked; then the answer to `?` (always S00).
        assert recv_until(s, lambda b: b.endswith(b"#b3")) == b"$S05#b8+$S00#b3"
        s.close()
    finally:
        kill(c.proc)


def test_snapshot_load_clears_selection_and_recreates_pty(tmp_path):
    link, snap = tmp_path / "u", tmp_path / "s.save"
    c = Console("--plain", version=RENODE_114)
    try:
        c.take(b"(monitor) ")
        c.send(
            (
                'mach create "a"; machine LoadPlatformDescription @platforms/cpus/nrf52840.repl; '
                'emulation CreateUartPtyTerminal "t" "%s"; connector Connect sysbus.uart0 t\n' % link
            ).encode()
        )
        c.take(b"(a) ")
        c.send(b"Save @%s\n" % str(snap).encode())
        c.take(b"(a) ")
        c.send(b"Load @%s\n" % str(snap).encode())  # the old link still exists, forceCreate=false
        assert b"Use forceCreate to overwrite it." in c.take(b"(a) ")
        c.send(b"Clear; Load @%s\n" % str(snap).encode())
        assert c.take(b"(monitor) ").endswith(b"\n\r(monitor) ")  # selection lost
        assert os.path.islink(link)
        c.send(b"quit\n")
        assert c.proc.wait(TIMEOUT) == 0
        assert not os.path.lexists(link)
    finally:
        kill(c.proc)


# ---------------------------------------------------------------------------------------------
# The monitor's Python: `include @file.py`, `mc_` commands, and the driver's expect.py run inside it

EXPECT_PY = HERE.parent / "src" / "jumpstarter_driver_renode" / "inside_renode" / "expect.py"
ERROR_HEADER = "There was an error executing command '%s'\r\n"


def test_include_py_defines_monitor_commands(tmp_path):
    """Bytes as real Renode 1.16.1 printed them for the same file (measured)."""
    script = tmp_path / "cmds.py"
    script.write_text(
        "calls = []\n"
        "def mc_hello(a, b):\n"
        "    calls.append(a)\n"
        '    print("hi %s %r" % (a, b))\n'
        '    print("two")\n'
        "def mc_boom(a):\n"
        '    raise Exception("bad thing %s" % a)\n'
        "def mc_where():\n"
        "    print(monitor.Machine is self.Machine, monitor.Machine)\n"
        "def mc_node(name):\n"
        "    monitor.Machine[name]\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text("def f(:\n  pass\n")
    c = Console("--plain", version=RENODE_116)
    try:
        c.take(b"(monitor) ")

        cmd = c.runner(b"(monitor) ")

        assert cmd("include @%s" % script) == ""
        assert cmd('hello "x" 5') == "hi x 5\r\r\ntwo\r\r\n"
        assert cmd('hello "x" 0x10; echo "after"') == "hi x 16\r\r\ntwo\r\r\nafter\r\r\n"
        assert cmd("hello x 5") == (ERROR_HEADER % "hello x 5") + "No such emulation element: x\r\n"
        assert (
            cmd('boom "q"; echo "never"')
            == (ERROR_HEADER % 'boom "q"') + "Command 'boom q' failed\r\n\tbad thing q\r\n"
        )
        out = cmd("hello")
        assert out.startswith((ERROR_HEADER % "hello") + "Command 'hello ' failed\r\n\t")
        assert cmd("where") == "True None\r\r\n"
        assert cmd("include @%s" % bad).startswith(ERROR_HEADER % ("include @%s" % bad))
        # one scope for the process: `python` sees it, and it survives Clear
        assert cmd("Clear") == ""
        assert cmd('python "print(calls)"') == "['x', 'x']\r\r\n"
        assert cmd('mach create "m"', b"(m) ") == ""
        c.send(b"machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl\n")
        c.take(b"(m) ")
        assert cmd("where", b"(m) ") == "True m\r\r\n"
        assert cmd('node "sysbus.usart2"', b"(m) ") == ""
        assert cmd('node "sysbus.usart9"', b"(m) ") == (
            (ERROR_HEADER % 'node "sysbus.usart9"')
            + "Command 'node sysbus.usart9' failed\r\n"
            + "\tCould not find node 'sysbus.usart9', the longest matching was 'sysbus'.\r\n"
        )
        assert cmd('node "usart2"', b"(m) ").endswith(
            "\tCould not find node 'usart2', the longest matching was ''.\r\n"
        )
        assert cmd("bogus", b"(m) ") == "No such command or device: bogus\r\n"
    finally:
        kill(c.proc)


class ExpectSession:
    """The stand-in with the project firmware on an STM32F4, expect.py included, USART2 on a PTY and watched."""

    def __init__(self, fw, link):
        self.c = Console("--plain", version=RENODE_116)
        self.link = link
        self.pty = None
        self.typed = 0
        try:
            self.c.take(b"(monitor) ")
            for line in (
                'mach create "m"',
                "machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl",
                'emulation CreateUartPtyTerminal "term_usart2" "%s" true' % link,
                "connector Connect sysbus.usart2 term_usart2",
                "sysbus LoadELF @%s" % fw.elf,
                "include @%s" % EXPECT_PY,
                'jumpstarter_watch "sysbus.usart2" "term_usart2"',
            ):
                assert self.cmd(line) == ""
            self.pty = os.open(str(link), os.O_RDWR | os.O_NOCTTY)
            self.setup()
        except BaseException:
            self.close()  # no stand-in left behind
            raise

    def setup(self):
        """More set-up for subclasses."""

    def cmd(self, line):
        return self.c.run(line, b"(m) ")

    def type(self, data):
        os.write(self.pty, data)
        self.typed += len(data)

    def expect(self, pattern, failing=(), timeout_ns=1_000_000_000):
        """(outcome, ns, now ns, matched text) of one jumpstarter_expect, built and parsed by the driver."""
        line = expect.expect_command("sysbus.usart2", pattern, list(failing), timeout_ns / 1e9, 30, self.typed)
        out = self.cmd(line)
        assert re.fullmatch(r"jumpstarter-expect [^\r\n]*\r\r\n", out), out  # one line, as Renode prints it
        reply = expect.parse_reply(out)
        assert reply.delivered == self.typed
        outcome = "fail%d" % reply.failing if reply.outcome == "fail" else reply.outcome
        return outcome, round(reply.time * 1e9), round(reply.now * 1e9), reply.matched

    def virtual_time(self):
        out = self.cmd("currentTime")
        return re.search(r"Current virtual time: (\d\d):(\d\d):(\d\d)\.(\d{9})", out).groups()

    def close(self):
        if self.pty is not None:
            os.close(self.pty)
        kill(self.c.proc)


def ns_time(ns):
    s, frac = divmod(ns, 10**9)
    return ("%02d" % (s // 3600), "%02d" % (s // 60 % 60), "%02d" % (s % 60), "%09d" % frac)


def test_expect_py_waits_in_exact_virtual_time(firmware, tmp_path):
    """The driver's expect.py, run by the stand-in's monitor Python against the project firmware: waits on a
    paused machine end paused exactly where they matched or timed out, and the same input gives the same times."""
    fw = firmware()
    s = ExpectSession(fw, tmp_path / "uart")
    try:
        # the banner is printed when the machine first runs: virtual time 0, and the machine stays there
        assert s.expect("BOOT") == ("match", 0, 0, "BOOT")
        assert s.cmd('python "print(EmulationManager.Instance.CurrentEmulation.IsStarted)"') == "False\r\r\n"
        assert s.virtual_time() == ns_time(0)
        assert s.cmd('python "print(self.Machine.ElapsedVirtualTime.TimeElapsed)"') == "00:00:00.000000000\r\r\n"
        # the rest of the banner is printed when it runs again; a timeout ends exactly at start + timeout
        outcome, when, now, _ = s.expect("nothing", timeout_ns=50_000_000)
        assert (outcome, when, now) == ("timeout", 50_000_000, 50_000_000)
        assert s.virtual_time() == ns_time(50_000_000)
        assert read_fd_until(s.pty, lambda b: b.endswith(b"\r\n")) == fw.banner + b"\r\n"
        # A snapshot here, for a second run. Save refuses while a Python handler is on the terminal (measured).
        snap = tmp_path / "s.save"
        assert "Pointer or ThreadLocal or SpinLock" in s.cmd("Save @%s" % snap)
        assert s.cmd("jumpstarter_unhook; Save @%s; jumpstarter_hook" % snap) == ""

        def ticks():
            # typed while paused: processed when the machine runs, at the wait's start
            s.type(b"ticks on\r")
            assert s.expect("tick 3") == ("match", 350_000_000, 350_000_000, "tick 3")
            assert s.virtual_time() == ns_time(350_000_000)
            # a failing pattern that comes first wins, at its own time
            assert s.expect("tick 9", failing=["tick 5"]) == ("fail0", 550_000_000, 550_000_000, "tick 5")
            return read_fd_until(s.pty, lambda b: b.endswith(b"tick 5"))

        assert ticks() == b"echo: ticks on\r\ntick 1\r\ntick 2\r\ntick 3\r\ntick 4\r\ntick 5"
        assert s.expect("tick 6", timeout_ns=0)[0] == "timeout"  # nothing printed since: a zero wait times out
        # the same again from the snapshot: the same times. After Load the machine is a new one (watched
        # again) and its terminal passes bytes only once reconnected (measured on 1.16.1).
        os.close(s.pty)
        s.pty = None  # a new PTY comes with the loaded terminal
        s.c.send(b"Clear; Load @%s\n" % str(snap).encode())
        assert s.c.take(b"(monitor) ") == b"Clear; Load @%s\n\r(monitor) " % str(snap).encode()
        assert s.cmd('mach set "m"') == ""
        assert "is not watched in this machine" in s.cmd('jumpstarter_expect "sysbus.usart2" "00" "-" "0" "0" "0"')
        assert (
            s.cmd("connector Disconnect sysbus.usart2 term_usart2; connector Connect sysbus.usart2 term_usart2") == ""
        )
        assert s.cmd('jumpstarter_watch "sysbus.usart2" "term_usart2"') == ""
        s.pty, s.typed = os.open(str(s.link), os.O_RDWR | os.O_NOCTTY), 0
        assert s.virtual_time() == ns_time(50_000_000)
        assert ticks() == b"echo: ticks on\r\ntick 1\r\ntick 2\r\ntick 3\r\ntick 4\r\ntick 5"
    finally:
        s.close()


def test_scheduled_actions_and_precise_pause_in_virtual_time(firmware, tmp_path):
    """Machine.ScheduleAction runs at its virtual time on a running machine; a precise pause from it stops
    the clock there (nothing later is printed); RunFor is exact; while started, virtual time follows host time."""
    fw = firmware()
    s = ExpectSession(fw, tmp_path / "uart")

    def py(code):
        return s.cmd('python "%s"' % code)

    try:
        assert py("from Antmicro.Renode.Core import EmulationManager; emulation = EmulationManager.Instance") == ""
        assert py("from Antmicro.Renode.Time import TimeInterval; from System import Action; m = self.Machine") == ""
        assert py("seen = []; now = lambda: m.ElapsedVirtualTime.TimeElapsed.TotalNanoseconds") == ""
        assert py("at = lambda _: (seen.append(now()), m.PauseAndRequestEmulationPause(True))") == ""
        s.type(b"ticks on\r")
        assert py("m.ScheduleAction(TimeInterval.FromNanoseconds(250000001), Action[TimeInterval](at), 't')") == ""
        assert py("print([e.LocalName for e in m.ClockSource.GetAllClockEntries()])") == "['t']\r\r\n"
        time.sleep(0.2)  # the typed line reaches the UART (its reader thread) before the machine runs
        started = time.monotonic()
        assert py("emulation.CurrentEmulation.StartAll()") == ""
        deadline = started + TIMEOUT
        while py("print(emulation.CurrentEmulation.IsStarted)") != "False\r\r\n":
            assert time.monotonic() < deadline
        assert time.monotonic() - started >= 0.2  # real-time pacing: 250 ms of virtual time took about as long
        assert py("print(seen, m.ClockSource.GetAllClockEntries())") == "[250000001] []\r\r\n"
        assert s.virtual_time() == ns_time(250_000_001)
        out = read_fd_until(s.pty, lambda b: b.endswith(b"tick 2\r\n"))
        assert out == fw.banner + b"\r\necho: ticks on\r\ntick 1\r\ntick 2\r\n"
        assert select.select([s.pty], [], [], 0.2)[0] == []  # paused: no tick 3 (due at 300 ms)
        assert s.cmd('emulation RunFor "0.049999998"') == ""  # to 1 ns before tick 3
        assert select.select([s.pty], [], [], 0.2)[0] == []
        assert s.cmd('emulation RunFor "0.000000001"') == ""
        assert read_fd_until(s.pty, lambda b: b.endswith(b"\r\n")) == b"tick 3\r\n"
        assert s.virtual_time() == ns_time(300_000_000)
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# Buttons and LEDs (Miscellaneous.Button / LED) and the project firmware's LED following its button

GPIO_PY = HERE.parent / "src" / "jumpstarter_driver_renode" / "inside_renode" / "gpio.py"
BUTTON = "sysbus.gpioPortA.UserButton"
LED = "sysbus.gpioPortD.UserLED"


def test_button_and_led_monitor_commands(tmp_path):
    """Bytes as real Renode 1.16.1 printed them (plain mode, firmware/README.md), on the STM32F4 Discovery kit."""
    c = Console("--plain", version=RENODE_116)
    try:
        c.take(b"(monitor) ")

        cmd = c.runner(b"(m0) ")

        c.send(b'mach create "m0"\n')
        c.take(b"(m0) ")
        assert cmd("machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl") == ""
        assert cmd("%s Pressed" % BUTTON) == "False\r\r\n"
        assert cmd("%s Press" % BUTTON) == ""
        assert cmd("%s State" % LED) == "False\r\r\n"  # no firmware runs: the LED never changes
        assert cmd("%s Pressed" % BUTTON) == "True\r\r\n"
        assert cmd("%s Release" % BUTTON) == ""
        assert cmd("%s Pressed" % BUTTON) == "False\r\r\n"
        assert cmd("%s Toggle" % BUTTON) == ""
        assert cmd("%s Pressed" % BUTTON) == "True\r\r\n"
        assert cmd("%s PressAndRelease" % BUTTON) == ""
        assert cmd("gpioPortA.UserButton Pressed") == "False\r\r\n"  # `using sysbus.`
        assert cmd("%s State False" % LED) == "False\r\r\n"  # read-only: the value is ignored
        assert cmd("sysbus.gpioPortD.NoSuch State") == "No such command or device: sysbus.gpioPortD.NoSuch\r\n"
        assert cmd("%s Press" % LED) == (
            (ERROR_HEADER % ("%s Press" % LED)) + "%s does not provide a field, method or property Press.\r\n" % LED
        )
        assert cmd("%s State" % BUTTON) == (
            (ERROR_HEADER % ("%s State" % BUTTON))
            + "%s does not provide a field, method or property State.\r\n" % BUTTON
        )
        assert cmd("UserLED State") == "No such command or device: UserLED\r\n"
        assert cmd("sysbus.UserButton Press") == "No such command or device: sysbus.UserButton\r\n"
        # the rest of the kit (stm32f4_discovery-additional_gpios.repl)
        assert cmd("sysbus.gpioPortA.externalButton Press") == ""
        assert cmd("sysbus.gpioPortA.externalLed State") == "False\r\r\n"
        # the Python API: every facade has its .NET type; only buttons and LEDs have their members
        types = "print([self.Machine[n].GetType().Name for n in ('%s', '%s', 'sysbus.usart2', 'sysbus')])"
        assert cmd('python "%s"' % (types % (BUTTON, LED))) == "['Button', 'LED', 'STM32_UART', 'SystemBus']\r\r\n"
        members = "print([hasattr(self.Machine['%s'], m) for m in ('Press', 'Pressed', 'State', 'StateChanged')])"
        assert cmd('python "%s"' % (members % BUTTON)) == "[True, True, False, True]\r\r\n"
        assert cmd('python "%s"' % (members % LED)) == "[False, False, True, True]\r\r\n"
        assert cmd('python "%s"' % (members % "sysbus.usart2")) == "[False, False, False, False]\r\r\n"
        assert cmd("python \"self.Machine['sysbus.gpioPortD.NoSuch']\"").endswith(
            "Could not find node 'sysbus.gpioPortD.NoSuch', the longest matching was 'sysbus.gpioPortD'.\r\n"
        )
    finally:
        kill(c.proc)


def test_button_and_led_errors_in_colour():
    c = Console(version=RENODE_116)
    try:
        c.take(b"(monitor) \x1b[0m")
        c.send(b'mach create "m0"; machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl\n')
        c.take(b"(m0) \x1b[0m")
        c.send(b"%s Press\n" % LED.encode())
        assert c.take(b"(m0) \x1b[0m") == (
            b"%s Press\n\r\x1b[;031mThere was an error executing command '%s Press'\r\n\x1b[0m"
            b"\x1b[;031m%s does not provide a field, method or property Press.\r\n\x1b[0m\x1b[33;1m(m0) \x1b[0m"
            % (LED.encode(), LED.encode(), LED.encode())
        )
    finally:
        kill(c.proc)


class GpioSession(ExpectSession):
    """ExpectSession with gpio.py included too, and Python lists of the button's and the LED's events."""

    def setup(self):
        assert self.cmd("include @%s" % GPIO_PY) == ""
        for code in (
            "button = self.Machine['%s']; led = self.Machine['%s']" % (BUTTON, LED),
            "pressed = []; lit = []",
            "led.StateChanged += lambda sender, state: lit.append((sender is led, state))",
        ):
            assert self.cmd('python "%s"' % code) == ""

    def py(self, code):
        return self.cmd('python "print(%s)"' % code)

    def led(self):
        return self.cmd("%s State" % LED)


def test_led_follows_the_button_with_the_project_firmware(firmware, tmp_path):
    """While the machine runs, each change of the button lights or darkens the LED and prints one line
    (the firmware's EXTI0 interrupt), at the virtual time of the change."""
    fw = firmware()
    s = GpioSession(fw, tmp_path / "uart")
    try:
        assert s.cmd("start") == "Starting emulation...\r\n\r"
        assert s.expect("BOOT")[0] == "match"
        assert s.cmd('python "button.StateChanged += lambda state: pressed.append(state)"') == ""
        assert s.cmd("%s Press" % BUTTON) == ""
        assert s.py("pressed") == "[True]\r\r\n"  # raised at once, on the caller's thread
        outcome, pressed_ns, _, _ = s.expect("button pressed\r\n")
        assert outcome == "match"
        assert s.led() == "True\r\r\n"  # set before the line was printed
        assert s.cmd("%s Release" % BUTTON) == ""
        outcome, released_ns, _, _ = s.expect("button released\r\n")
        assert outcome == "match" and released_ns >= pressed_ns
        assert s.led() == "False\r\r\n"
        assert s.py("pressed, lit") == "[True, False] [(True, True), (True, False)]\r\r\n"
        # a press with nothing changed raises the button's event again, and the LED's not at all
        assert s.cmd('python "button.Release()"; %s State' % LED) == "False\r\r\n"
        assert s.py("pressed, lit") == "[True, False, False] [(True, True), (True, False)]\r\r\n"
        assert read_fd_until(s.pty, lambda b: b.endswith(b"released\r\n")) == (
            fw.banner + b"\r\nbutton pressed\r\nbutton released\r\n"
        )
        # the lines come between whole lines of the firmware's other output
        s.type(b"ticks on\r")
        s.expect("tick 2")
        s.cmd("%s Press" % BUTTON)
        s.expect("tick 4")
        out = read_fd_until(s.pty, lambda b: b.endswith(b"tick 4\r\n"))
        assert sorted(out.split(b"\r\n")) == sorted(
            [b"echo: ticks on", b"tick 1", b"tick 2", b"tick 3", b"tick 4", b"button pressed", b""]
        )
    finally:
        s.close()


def test_press_while_paused_is_handled_when_the_machine_runs(firmware, tmp_path):
    """Pressed changes at once; the LED and the line come when the machine runs, at the virtual time it was
    paused at; gpio.py's LED wait stops the machine exactly at the LED's change."""
    fw = firmware()
    s = GpioSession(fw, tmp_path / "uart")
    try:
        assert s.expect("nothing", timeout_ns=50_000_000)[:3] == ("timeout", 50_000_000, 50_000_000)
        assert read_fd_until(s.pty, lambda b: b.endswith(b"\r\n")) == fw.banner + b"\r\n"
        assert s.cmd("%s Press" % BUTTON) == ""
        assert s.cmd("%s Pressed; %s State" % (BUTTON, LED)) == "True\r\r\nFalse\r\r\n"
        time.sleep(0.1)
        assert s.led() == "False\r\r\n"  # paused: the firmware has not run
        out = s.cmd('jumpstarter_led_wait "%s" "rising" "1000000000" "30000"' % LED)
        assert out == "jumpstarter-gpio edge 1 50000000 50000000\r\r\n"
        assert s.led() == "True\r\r\n" and s.virtual_time() == ns_time(50_000_000)
        assert s.py("lit") == "[(True, True)]\r\r\n"
        # stopped right at the LED's write: the line is printed when the machine runs again, at that time
        assert select.select([s.pty], [], [], 0.2)[0] == []
        assert s.expect("button pressed\r\n")[:3] == ("match", 50_000_000, 50_000_000)
        assert read_fd_until(s.pty, lambda b: b.endswith(b"\r\n")) == b"button pressed\r\n"
        # a release while paused, then input: the button's interrupt comes first
        assert s.cmd("%s Release" % BUTTON) == ""
        s.type(b"hi\r")
        assert s.expect("echo: hi\r\n")[:3] == ("match", 50_000_000, 50_000_000)
        assert read_fd_until(s.pty, lambda b: b.endswith(b"hi\r\n")) == b"button released\r\necho: hi\r\n"
        assert s.led() == "False\r\r\n"
        # gpio.py's button commands
        assert s.cmd('jumpstarter_button "%s" "press"' % BUTTON) == "jumpstarter-gpio press 1 50000000 50000000\r\r\n"
        out = s.cmd('jumpstarter_led_wait "%s" "active" "1000000000" "30000"' % LED)
        assert out == "jumpstarter-gpio edge 1 50000000 50000000\r\r\n"
        out = s.cmd('jumpstarter_button_hold "%s" "20000000" "30000"' % BUTTON)  # already pressed: no edge
        assert out == "jumpstarter-gpio released 0 70000000 70000000\r\r\n"
        assert s.expect("button released")[:3] == ("match", 70_000_000, 70_000_000)
    finally:
        s.close()


def test_press_before_the_first_start_lights_the_led_from_boot(firmware, tmp_path):
    """Measured on 1.16.1: the firmware reads the button at boot and sets the LED silently."""
    fw = firmware()
    s = GpioSession(fw, tmp_path / "uart")
    try:
        assert s.cmd("%s Press" % BUTTON) == ""
        assert s.led() == "False\r\r\n"
        assert s.expect("BOOT")[:3] == ("match", 0, 0)
        assert s.led() == "True\r\r\n"
        assert s.py("lit") == "[(True, True)]\r\r\n"
        assert s.expect("nothing", timeout_ns=50_000_000)[0] == "timeout"
        assert read_fd_until(s.pty, lambda b: b.endswith(b"\r\n")) == fw.banner + b"\r\n"
        assert select.select([s.pty], [], [], 0.2)[0] == []  # no `button pressed`
    finally:
        s.close()


def test_reset_releases_the_button_and_the_led_survives_snapshots(firmware, tmp_path):
    fw = firmware()
    s = GpioSession(fw, tmp_path / "uart")
    snap = tmp_path / "s.save"
    try:
        assert s.cmd("%s Press" % BUTTON) == ""
        assert s.expect("BOOT")[0] == "match"
        # Save keeps the LED and the button (a Python handler on the LED's [Transient] event is no obstacle)
        assert s.cmd("jumpstarter_unhook; Save @%s; jumpstarter_hook" % snap) == ""
        # Button.Reset presses and releases (its event is raised twice); LED.Reset is silent
        assert s.cmd('python "button.StateChanged += lambda state: pressed.append(state)"') == ""
        assert s.cmd("machine Reset") == ""
        assert s.cmd("%s Pressed; %s State" % (BUTTON, LED)) == "False\r\r\nFalse\r\r\n"
        assert s.py("pressed, lit") == "[True, False] [(True, True)]\r\r\n"
        # derived from Button.cs (not measured): its StateChanged is serialized, so a Python handler there stops Save
        assert "Pointer or ThreadLocal or SpinLock" in s.cmd("jumpstarter_unhook; Save @%s" % (tmp_path / "x"))
        os.close(s.pty)
        s.pty = None
        s.c.send(b"Clear; Load @%s\n" % str(snap).encode())
        s.c.take(b"(monitor) ")
        assert s.cmd('mach set "m"') == ""
        assert s.cmd("%s Pressed; %s State" % (BUTTON, LED)) == "True\r\r\nTrue\r\r\n"
        # the loaded firmware runs on from where it was saved (virtual time 0): it sees the release
        assert s.cmd("%s Release" % BUTTON) == ""
        out = s.cmd('jumpstarter_led_wait "%s" "falling" "1000000000" "30000"' % LED)
        assert out == "jumpstarter-gpio edge 0 0 0\r\r\n"
    finally:
        s.close()


def test_led_never_changes_without_the_project_firmware(tmp_path):
    elf = tmp_path / "fw.elf"
    elf.write_bytes(make_elf(40, payload=CORTEX_M_CODE + b"\x00" * 54))
    c = Console("--plain", version=RENODE_116)
    try:
        c.take(b"(monitor) ")
        for line in (
            'mach create "m0"',
            "machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl",
            "sysbus LoadELF @%s" % elf,
            "start",
            "%s Press" % BUTTON,
            'emulation RunFor "0.1"',
        ):
            c.send(line.encode() + b"\n")
            c.take(b"(m0) ")
        time.sleep(0.1)
        c.send(b"pause; %s State\n" % LED.encode())
        assert c.take(b"(m0) ").endswith(b"Pausing emulation...\r\n\rFalse\r\r\n(m0) ")
    finally:
        kill(c.proc)


def test_gpio_py_checks_the_kind_of_a_peripheral(firmware, tmp_path):
    s = GpioSession(firmware(), tmp_path / "uart")
    try:
        assert s.cmd('jumpstarter_gpio_check "%s" "led"' % LED) == ""
        assert s.cmd('jumpstarter_gpio_check "%s" "button"' % BUTTON) == ""
        line = 'jumpstarter_gpio_check "sysbus.usart2" "led"'
        assert s.cmd(line) == (
            (ERROR_HEADER % line)
            + "Command 'jumpstarter_gpio_check sysbus.usart2 led' failed\r\n"
            + "\tjumpstarter-error wrong-kind: sysbus.usart2 is a STM32_UART, not an LED (Miscellaneous.LED)\r\n"
        )
        assert s.cmd('jumpstarter_gpio_check "%s" "button"' % LED).endswith(
            "\tjumpstarter-error wrong-kind: %s is a LED, not a button (Miscellaneous.Button)\r\n" % LED
        )
        assert s.cmd('jumpstarter_gpio_check "sysbus.gpioPortD.NoSuch" "led"').endswith(
            "\tjumpstarter-error no-such-peripheral: Could not find node 'sysbus.gpioPortD.NoSuch', the longest "
            "matching was 'sysbus.gpioPortD'.\r\n"
        )
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# Emulation.StartAll's sleep, the driver's start without it (machine.py), and the reset macro after Load

MACHINE_PY = HERE.parent / "src" / "jumpstarter_driver_renode" / "inside_renode" / "machine.py"
HALTED = "PC does not lay in memory or PC and SP are equal to zero. CPU was halted."


def timed(s, line):
    started = time.monotonic()
    out = s.cmd(line)
    return out, time.monotonic() - started


def test_start_sleeps_100_ms(firmware, tmp_path):
    """Emulation.StartAll ends with Thread.Sleep(100) (infra commit 563b429ad): `start` and StartAll from
    Python take 100 ms more than the work (measured on 1.16.1: `start` answers after 0.106-0.109 s)."""
    fw = firmware()
    s = ExpectSession(fw, tmp_path / "uart")
    try:
        out, took = timed(s, "start")
        assert (out, took >= 0.1) == ("Starting emulation...\r\n\r", True)
        assert read_fd_until(s.pty, lambda b: b.endswith(b"\r\n")) == fw.banner + b"\r\n"
        assert s.cmd("pause") == "Pausing emulation...\r\n\r"
        assert s.cmd('python "from Antmicro.Renode.Core import EmulationManager"') == ""
        out, took = timed(s, 'python "EmulationManager.Instance.CurrentEmulation.StartAll()"')
        assert (out, took >= 0.1) == ("", True)
        assert s.cmd("pause") == "Pausing emulation...\r\n\r"
    finally:
        s.close()


def test_reflection_and_threading_api(tmp_path):
    """The .NET API slice machine.py and expect.py use: Monitor, Object, reflection on non-public methods."""
    script = tmp_path / "api.py"
    script.write_text(
        "from System import Object\n"
        "from System.Reflection import BindingFlags\n"
        "from System.Threading import Monitor\n"
        "from Antmicro.Renode.Core import EmulationManager\n"
        "def mc_api():\n"
        "    lock = Object()\n"
        "    Monitor.Enter(lock); Monitor.Enter(lock); Monitor.Exit(lock); Monitor.Exit(lock)\n"
        "    try:\n"
        "        Monitor.Exit(lock)\n"
        "    except Exception as e:\n"
        "        print(type(e).__name__)\n"
        "    emulation = EmulationManager.Instance.CurrentEmulation\n"
        "    kind, hidden = monitor.GetType(), BindingFlags.NonPublic | BindingFlags.Instance\n"
        "    register = kind.GetMethod('RegisterResetCommand', hidden)\n"
        "    print(register is not None, register.IsPrivate, len(register.GetParameters()))\n"
        "    print(kind.GetMethod('RegisterResetCommand'), kind.GetMethod('NoSuch', hidden))\n"
        "    print(kind.GetMethod('RegisterResetCommand', BindingFlags.NonPublic))\n"
        "    print(emulation.GetType().GetMethod('PauseAll', BindingFlags.Public | BindingFlags.Instance).Invoke(emulation, None))\n"
        "    try:\n"
        "        register.Invoke(monitor, None)\n"
        "    except Exception as e:\n"
        "        print(type(e).__name__)\n"
        "    try:\n"
        "        register.Invoke(None, (None,))\n"
        "    except Exception as e:\n"
        "        print(type(e).__name__)\n"
    )
    c = Console("--plain", version=RENODE_116)
    try:
        c.take(b"(monitor) ")
        c.send(b"include @%s\n" % str(script).encode())
        c.take(b"(monitor) ")
        c.send(b"api\n")
        assert c.take(b"(monitor) ").decode().split("\r\r\n")[:-1] == [
            "api\n\rSynchronizationLockException",
            "True True 1",
            "None None",
            "None",
            "None",
            "TargetParameterCountException",
            "TargetException",
        ]
    finally:
        kill(c.proc)


def wait_file(path, text, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        assert time.monotonic() < deadline, "%r not in %r" % (text, content[-500:])
        time.sleep(0.02)  # a file has no change notification: poll it


def test_after_load_a_reset_skips_the_reset_macro_until_the_handler_is_registered_again(firmware, tmp_path):
    """The monitor registers its reset handler (Monitor.RegisterResetCommand) for machines added to the
    emulation; a machine from `Load` never is, so `machine Reset` neither runs the `reset` macro nor
    warns that there is none, and a Cortex-M halts at 0 (and stays halted). machine.py's
    jumpstarter_rearm_reset registers the handler for the selected machine."""
    fw = firmware()
    log, link = tmp_path / "renode.log", tmp_path / "uart"
    c = Console("--plain", version=RENODE_116)
    ptys = []

    cmd = c.runner(b"(m) ")

    def loaded_and_started():
        """The snapshot loaded, the `reset` macro set, started: the banner."""
        assert cmd("Clear; Load @%s/snap.save" % tmp_path, b"(monitor) ") == ""
        for line in (
            'mach set "m"',
            "logFile @%s true" % log,
            'macro reset "sysbus LoadELF @%s"' % fw.elf,
            "connector Disconnect sysbus.usart2 term",
            "connector Connect sysbus.usart2 term",
        ):
            assert cmd(line) == ""
        ptys.append(os.open(str(link), os.O_RDWR | os.O_NOCTTY))
        assert cmd("start") == "Starting emulation...\r\n\r"
        assert read_fd_until(ptys[-1], lambda b: b.endswith(b"\r\n")) == fw.banner + b"\r\n"
        log.write_text("")
        return ptys[-1]

    try:
        c.take(b"(monitor) ")
        for line in (
            'mach create "m"',
            "machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl",
            "logFile @%s true" % log,
            'emulation CreateUartPtyTerminal "term" "%s" true' % link,
            "connector Connect sysbus.usart2 term",
            "machine Reset",  # a machine created here has the handler: no macro, so a warning
            "sysbus LoadELF @%s" % fw.elf,
            "Save @%s/snap.save" % tmp_path,
        ):
            assert cmd(line) == ""
        wait_file(log, "No action for reset - macro m.reset is not registered.")

        pty = loaded_and_started()
        assert cmd("machine Reset") == ""
        wait_file(log, HALTED)
        assert "No action for reset" not in log.read_text()
        assert select.select([pty], [], [], 0.5)[0] == []
        assert cmd("sysbus.cpu PC") == "0x0\r\r\n"

        # loaded again (not halted), and the driver registers the handler: resets run the macro again
        pty = loaded_and_started()
        assert cmd("include @%s" % MACHINE_PY) == ""
        assert cmd("jumpstarter_rearm_reset") == "jumpstarter-rearm done\r\r\n"
        assert cmd("machine Reset") == ""
        assert read_fd_until(pty, lambda b: b.endswith(b"\r\n")) == fw.banner + b"\r\n"
        assert cmd("sysbus.cpu PC") != "0x0\r\r\n"
        assert HALTED not in log.read_text()
    finally:
        for pty in ptys:
            os.close(pty)
        kill(c.proc)
