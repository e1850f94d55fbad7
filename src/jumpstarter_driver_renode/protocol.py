"""The monitor byte stream, parsed without I/O.

Renode's monitor (an AntShell line editor, on a telnet socket or on stdin/stdout) sends telnet
negotiation (socket only), SGR colours and cursor-control CSI sequences, echoes every typed
character, ends lines with `\\n\\r`, `\\r\\n\\r` or `\\r\\r\\n`, writes errors in red (`ESC[;031m`, the
same in real 1.14.0 and 1.16.1) and prints a prompt with no newline after it. `MonitorStream`
turns those bytes into text plus a per-character "was red" flag, and `take_reply` cuts one
command's reply out of it once the next prompt has arrived.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from .errors import ErrorKind

IAC, SB, SE = 0xFF, 0xFA, 0xF0
_NEGOTIATION = {0xFB, 0xFC, 0xFD, 0xFE}  # WILL WONT DO DONT: IAC + verb + option
_MAX_SUBNEGOTIATION = 1024
_MAX_ESCAPE = 64

# Error phrases from Renode's sources (Monitor.cs, MonitorCommands.cs, CreationDriver.cs ...): the
# second check beside the red colour, for --plain output and commands that print without colour.
ERROR_LINE_RE = re.compile(
    r"^(No such command or device:|No such command:|There was an error executing command|"
    r"Parameters did not match the signature|Bad parameters for command|Could not tokenize here:|"
    r"No such variable:|Could not find (file|device)|Error E\d\d:|Cannot load ELF|Machine .* not found\.)"
)


_HELPER_ERROR_RE = re.compile(r"jumpstarter-error ([a-z-]+): (.*)")
_DOWNLOAD_RE = re.compile(r"Failed to download ")
_NO_SUCH_NAME_RE = re.compile(r"Parameters did not match the signature")


def classify_error(message: str) -> tuple[ErrorKind, str, str]:
    """(kind, reason, detail) of a monitor error's text: the one place that reads Renode's error wording.

    Helpers inside Renode refuse with `jumpstarter-error <reason>: <text>` (inside_renode/); Renode's own
    errors are told by their phrases. `detail` is the line worth quoting.
    """
    if m := _HELPER_ERROR_RE.search(message):
        return ErrorKind.HELPER, m[1], m[2].strip()
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    last = lines[-1] if lines else message
    if _DOWNLOAD_RE.search(message):
        return ErrorKind.DOWNLOAD_FAILED, "", last
    if _NO_SUCH_NAME_RE.search(message):
        return ErrorKind.NO_SUCH_NAME, "", last
    return ErrorKind.OTHER, "", last


def _is_error_sgr(params: str) -> bool:
    """Red foreground without bold: `ESC[;031m`, the error colour of real Renode 1.14.0 and 1.16.1.

    The `(monitor)` prompt is dark red *bold* (`ESC[31;1m`), which is not an error (nor are the
    bold red default values in a method listing). Real 1.16.1 (`--console` transcripts) writes
    errors exactly like 1.14.0: `ESC[;031m<line>\\r\\n ESC[0m`, per line. Bright red `ESC[91m`,
    which an early reading of the 1.16 sources suggested, is still taken as an error: AntShell
    sends no bright colours, so accepting it costs nothing.
    """
    codes = [p.lstrip("0") or "0" for p in params.split(";")]
    return ("31" in codes and "1" not in codes) or "91" in codes


@dataclass
class MonitorStream:
    """Incremental decoder: feed bytes in any split, read text and its error flags."""

    text: list[str] = field(default_factory=list)
    red: list[bool] = field(default_factory=list)
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _pending: bytearray = field(default_factory=bytearray)
    _in_error: bool = False

    def feed(self, data: bytes) -> None:
        buf = self._pending + data
        self._pending = bytearray()
        plain = bytearray()
        i = 0
        n = len(buf)
        while i < n:
            b = buf[i]
            if b == IAC:
                consumed = self._telnet(buf, i)
                if consumed == 0:  # incomplete sequence: keep it for the next feed
                    self._pending = buf[i:]
                    break
                if consumed < 0:  # IAC IAC: a literal 0xFF data byte
                    plain.append(0xFF)
                    i += 2
                    continue
                i += consumed
                continue
            if b == 0x1B:
                end = self._escape_end(buf, i)
                if end is None:
                    self._pending = buf[i:]
                    break
                self._flush_plain(plain)
                self._apply_escape(bytes(buf[i:end]))
                i = end
                continue
            plain.append(b)
            i += 1
        self._flush_plain(plain)

    def _flush_plain(self, plain: bytearray) -> None:
        if plain:
            chars = self._decoder.decode(bytes(plain))
            self.text.extend(chars)
            self.red.extend([self._in_error] * len(chars))
            plain.clear()

    @staticmethod
    def _telnet(buf: bytearray, i: int) -> int:
        """Length of the telnet command at buf[i] (an IAC); 0 if incomplete; -1 for IAC IAC."""
        if i + 1 >= len(buf):
            return 0
        verb = buf[i + 1]
        if verb == IAC:
            return -1
        if verb in _NEGOTIATION:
            return 3 if i + 2 < len(buf) else 0
        if verb == SB:
            end = buf.find(bytes([IAC, SE]), i + 2, i + _MAX_SUBNEGOTIATION)
            if end >= 0:
                return end + 2 - i
            # Renode never sends sub-negotiation; an unterminated one is garbage: drop just IAC SB.
            return 0 if len(buf) - i < _MAX_SUBNEGOTIATION else 2
        return 2

    @staticmethod
    def _escape_end(buf: bytearray, i: int) -> int | None:
        """End index of the escape sequence at buf[i]; None if it is not complete yet."""
        if i + 1 >= len(buf):
            return None
        if buf[i + 1] != ord("["):
            return i + 2  # two-byte escape (ESC 7, ESC M ...)
        j = i + 2
        while j < len(buf):
            if j - i >= _MAX_ESCAPE:  # an absurdly long "sequence" is garbage: drop its first bytes
                return j  # (at a fixed length, so the result never depends on where a read ended)
            if 0x40 <= buf[j] <= 0x7E:
                return j + 1
            if not 0x20 <= buf[j] <= 0x3F:  # not a CSI parameter byte: malformed, drop what we have
                return j
            j += 1
        return None

    def _apply_escape(self, seq: bytes) -> None:
        if len(seq) >= 3 and seq[1:2] == b"[" and seq[-1:] == b"m":
            params = seq[2:-1].decode("ascii", "replace")
            self._in_error = _is_error_sgr(params)

    def consume(self, count: int) -> None:
        del self.text[:count]
        del self.red[:count]

    def as_str(self) -> str:
        return "".join(self.text)

    def ends_with_prompt(self) -> bool:
        """Cheap pre-check on the last characters only: output arrives a byte at a time."""
        return _PROMPT_AT_END_RE.search("".join(self.text[-_PROMPT_TAIL:])) is not None


@dataclass(frozen=True)
class Reply:
    """One command's answer: its output (line endings normalised) and Renode's error text, if any."""

    output: str
    error: str | None
    prompt: str = ""  # the prompt that ended the reply: tells which machine is selected now

    @property
    def ok(self) -> bool:
        return self.error is None


def _normalise(text: str) -> str:
    lines = text.replace("\r", "").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def _match_echo(text: str, start: int, command: str) -> int | None:
    """Index just past the echo of `command` beginning at `start`, or None if it is not (all) there.

    The line editor may wrap a long echo with extra line breaks; those are skipped.
    """
    i = start
    for ch in command:
        while i < len(text) and text[i] != ch and text[i] in "\r\n":
            i += 1
        if i >= len(text) or text[i] != ch:
            return None
        i += 1
    return i


# A prompt is `(monitor) ` or `(<machine name>) `, written after a line break with nothing after it.
# Any machine name is accepted, so scripts and snapshots that select their own machine keep working.
PROMPT_RE = re.compile(r"\((?:[^()\r\n]{1,64})\) ")
_PROMPT_AT_END_RE = re.compile(r"\((?:[^()\r\n]{1,64})\) \Z")
_PROMPT_TAIL = 64 + 4


def find_prompt_end(text: str, start: int = 0) -> tuple[int, int] | None:
    """(start, end) of a prompt that ends the buffer, if the buffer ends with one."""
    m = _PROMPT_AT_END_RE.search(text, start)
    if m is None:
        return None
    begin = m.start()
    if begin == start or text[begin - 1] in "\r\n":
        return begin, m.end()
    return None


def take_reply(stream: MonitorStream, command: str) -> Reply | None:
    """Cut the reply to `command` out of the stream once it is complete.

    A complete reply is: a prompt, the echoed command, an Enter (`\\n\\r`), output, and a prompt that
    ends the buffered text. Anything before the echoing prompt (stale or unsolicited output) is
    dropped with the reply.
    """
    if not stream.ends_with_prompt():
        return None
    text = stream.as_str()
    for m in PROMPT_RE.finditer(text):
        echo_end = _match_echo(text, m.end(), command)
        if echo_end is None or not text.startswith("\n", echo_end):
            continue
        body_start = echo_end + 1
        if text.startswith("\r", body_start):
            body_start += 1
        end_prompt = find_prompt_end(text, body_start)
        if end_prompt is None:
            return None
        body = text[body_start : end_prompt[0]]
        red = stream.red[body_start : end_prompt[0]]
        stream.consume(end_prompt[0])  # keep the final prompt: the next echo follows it
        return _reply(body, red, text[end_prompt[0] : end_prompt[1]])
    return None


def _reply(body: str, red: list[bool], prompt: str) -> Reply:
    output = _normalise(body)
    red_text = _normalise("".join(c if r else "\n" for c, r in zip(body, red, strict=True)))
    red_lines = [line for line in red_text.split("\n") if line.strip()]
    phrase_lines = [line for line in output.split("\n") if ERROR_LINE_RE.match(line)]
    if red_lines:
        return Reply(output, "\n".join(red_lines), prompt)
    if phrase_lines:
        # Without colour we cannot tell where the error ends: report it from the first error line on.
        lines = output.split("\n")
        first = lines.index(phrase_lines[0])
        return Reply(output, "\n".join(lines[first:]), prompt)
    return Reply(output, None, prompt)


def banner_ready(stream: MonitorStream) -> str | None:
    """The banner line (`Renode, version ...`) once the first prompt has followed it, else None."""
    if not stream.ends_with_prompt():
        return None
    text = stream.as_str()
    at = text.find("Renode, version ")
    if at < 0 or find_prompt_end(text, at) is None:
        return None
    return text[at:].split("\n", 1)[0].strip()


VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first x.y.z in Renode's banner or `--version` output."""
    m = VERSION_RE.search(text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None
