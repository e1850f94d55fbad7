"""Fail when a clean run printed a line it must not: a warning, a traceback, asyncio's complaints at exit.

python3 .ci/clean_output.py pytest FILE    # the README's test command: only pytest's own lines
python3 .ci/clean_output.py session FILE   # the main job: only the lines it means to print
"""

import re
import sys

STRAY = re.compile(
    r"Loop <.*> that handles pid|Exception ignored in|Task was destroyed but it is pending|"
    r"Task exception was never retrieved|Traceback \(most recent call last\)|\w+Warning: |warnings summary|"
    r"Python is likely shutting down|^(ERROR|WARNING|CRITICAL):"
)
SESSION_LINES = re.compile(
    r"DRY RUN: using the test stand-in .*|transfer .*|boot output: .*|console echo: .*|session OK: .*"
)


def main() -> int:
    kind, path = sys.argv[1], sys.argv[2]
    lines = [line.rstrip("\r") for line in open(path, encoding="utf-8", errors="replace").read().splitlines()]
    bad = [line for line in lines if STRAY.search(line)]
    if kind == "session":
        bad += [line for line in lines if line.strip() and not SESSION_LINES.fullmatch(line.strip())]
    for line in bad:
        print(f"stray line in the {kind} output: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
