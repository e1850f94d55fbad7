"""Reading the byte-exact transcripts of real Renode in tests/transcripts/.

`socket-*`: Renode 1.14.0 on its `--port` telnet socket (`*.raw.txt` keeps every chunk as it arrived).
`console-*`: Renode 1.16.1 in `--console` mode on stdin/stdout pipes (`--plain` for the plain one);
each `<<` line joins the reads until the next send (`[n reads]` tells how finely it was split).
Copied from the shared transcript set so the tests run on a clean clone.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent / "transcripts"
_LINE = re.compile(r"^\s*([\d.]+) (<<|>>|--) (b['\"].*?)(?:\s+\[\d+ reads?\])?$")  # 1.16.1: "[n reads]"


@dataclass(frozen=True)
class Event:
    time: float
    direction: str  # "<<" from Renode, ">>" to Renode, "--" a note
    data: bytes


def load(name: str) -> list[Event]:
    events = []
    for line in (HERE / name).read_text().splitlines():
        m = _LINE.match(line)
        if m:
            data = ast.literal_eval(m[3])
            if m[3].endswith("<EOF>'"):
                data = data[: -len(b"<EOF>")]
            events.append(Event(float(m[1]), m[2], data))
    return events


def exchanges(name: str) -> list[tuple[bytes, bytes]]:
    """(what the client sent, everything Renode answered until the next send) pairs."""
    pairs: list[tuple[bytes, bytearray]] = []
    for event in load(name):
        if event.direction == ">>":
            pairs.append((event.data, bytearray()))
        elif event.direction == "<<" and pairs:
            pairs[-1][1].extend(event.data)
    return [(sent, bytes(got)) for sent, got in pairs]


def chunks(name: str) -> list[bytes]:
    """Every chunk Renode sent, as it arrived (raw transcripts keep the one-byte packets)."""
    return [e.data for e in load(name) if e.direction == "<<"]
