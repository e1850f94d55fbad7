"""Tokenizer (infra src/Emulator/Extensions/UserInterface/Tokenizer/Tokenizer.cs, simplified) and
the monitor's value parsing: numbers, booleans, time intervals, `@paths`.
"""

import os
import re

from errors import CommandError
from paths import LAUNCH_CWD, ROOT
from versions import IS_116

NS = 1_000_000_000

TOKEN_RE = re.compile(
    r'''
    (?P<ws>\s+)
  | (?P<mstr>"""(?P<mval>.*?)""")
  | (?P<str>"(?P<sval>(?:\\.|[^"\\])*)")
  | (?P<sqs>'(?P<qval>(?:\\.|[^'\\])*)')
  | (?P<path>@(?:\\\ |[^\s;])+)
  | (?P<var>\$[A-Za-z_][\w\-]*(?:\.[\w\-]+)*(?:\?=|=|/[^\s;]*)?)
  | (?P<semi>;)
  | (?P<comment>[#].*)
  | (?P<word>[^\s;"']+)
''',
    re.S | re.X,
)


class Tok:
    def __init__(self, kind, value, text):
        self.kind, self.value, self.text = kind, value, text

    def __repr__(self):
        return "Tok(%s,%r)" % (self.kind, self.value)


def tokenize(line):
    """Returns a list of commands (lists of Tok), split at `;`. Raises CommandError."""
    commands, cur, pos = [], [], 0
    while pos < len(line):
        m = TOKEN_RE.match(line, pos)
        if not m:
            raise CommandError("Could not tokenize here:", line, " " * pos + "^")
        pos = m.end()
        if m.group("ws"):
            continue
        if m.group("comment") is not None:
            break
        if m.group("semi"):
            commands.append(cur)
            cur = []
        elif m.group("mstr") is not None:
            cur.append(Tok("str", m.group("mval"), m.group(0)))
        elif m.group("str") is not None:
            cur.append(Tok("str", re.sub(r'\\(["\'])', r"\1", m.group("sval")), m.group(0)))
        elif m.group("sqs") is not None:
            cur.append(Tok("str", re.sub(r"\\(['\"])", r"\1", m.group("qval")), m.group(0)))
        elif m.group("path") is not None:
            cur.append(Tok("path", m.group(0)[1:].replace("\\ ", " "), m.group(0)))
        elif m.group("var") is not None:
            cur.append(Tok("var", m.group(0)[1:], m.group(0)))
        else:
            cur.append(Tok("word", m.group(0), m.group(0)))
    commands.append(cur)
    return [c for c in commands if c]


def resolve_at_path(p):
    # infra Monitor.cs + MonitorPath.cs: process CWD (= root), launch CWD, root; else raw text
    if os.path.isabs(p):
        return p
    for base in (os.getcwd(), LAUNCH_CWD, ROOT):
        cand = os.path.join(base, p)
        if os.path.exists(cand):
            return os.path.abspath(cand)
    return p


def parse_number(s):
    s = s.strip()
    try:
        return int(s, 16) if s.lower().startswith("0x") else int(s)
    except ValueError:
        return None


def parse_bool(s):
    return {"true": True, "false": False}.get(s.lower())


def parse_time(s):
    """TimeInterval.Parse: [[hh:]mm:]ss[.frac] -> nanoseconds."""
    parts = s.split(":")
    if len(parts) > 3 or not s:
        raise ValueError(s)
    secs = parts[-1]
    if not re.fullmatch(r"\d+(\.\d+)?", secs):
        raise ValueError(s)
    whole, _, frac = secs.partition(".")
    ns = int(whole) * NS + int((frac + "000000000")[:9] or 0)
    mult = 60
    for p in reversed(parts[:-1]):
        if not p.isdigit():
            raise ValueError(s)
        ns += int(p) * mult * NS
        mult *= 60
    return ns


def fmt_time(ns):
    # infra src/Emulator/Main/Time/TimeInterval.cs: 1.14 six decimals, 1.16 nine decimals
    s, frac = divmod(ns, NS)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if IS_116:
        return "%02d:%02d:%02d.%09d" % (h, m, s, frac)
    return "%02d:%02d:%02d.%06d" % (h, m, s, frac // 1000)
