"""The monitor's Python (infra src/Emulator/Extensions/UserInterface/MonitorPythonEngine.cs).

One scope per process (globals persist across commands and across `Clear`/`Load`), with `monitor`
and `self` bound to the monitor (pyapi.MonitorFacade). Three ways in, as in Renode:
- `include @file.py` (TryExecutePythonScript): the file runs in the scope; any error, a syntax error
  included, is one monitor error: `There was an error executing command '<line>'` + its message
  (measured on 1.16.1: IronPython's `unexpected token ':'`; CPython's wording here).
- `python "code"` (ExecutePythonCommand): a syntax error prints `Line : <n>` + the message.
- `<name> args...` runs `mc_<name>` from the scope when nothing else claims the name (Monitor.cs tries
  Python commands last). Quoted arguments arrive as strings, numbers as numbers, `true`/`false` as
  booleans, a bare word as the emulation element it names (else `No such emulation element: <word>`).
  An exception becomes `Command '<name> <args joined by spaces>' failed` + a tab-indented message;
  a return value other than None/True prints `Command <name> failed, returning "<value>".`.

What the code prints reaches the monitor with each `\\n` as `\\r\\n`, which the terminal writes as `\\r\\r\\n`
(measured on 1.16.1: `hi x 5L\\r\\r\\n`, IronPython's repr of a long; CPython prints `5`); output to
sys.stderr is written as an error.
The .NET objects the code can reach are modelled in pyapi.py.
"""

import builtins
import re
import sys
import threading

import pyapi
from errors import CommandError
from tokens import parse_number

NUMBER = re.compile(r"-?(\d+\.\d*|\.\d+)$")


class PythonEngine:
    def __init__(self, monitor):
        pyapi.install(monitor)
        facade = pyapi.MonitorFacade()
        self.scope = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "print": self._print,
            "clr": sys.modules["clr"],
            "monitor": facade,
            "self": facade,
        }
        self.sink = threading.local()  # the writer of the command running on this thread

    # -- output ----------------------------------------------------------------------------------
    def _print(self, *values, sep=" ", end="\n", file=None, flush=False):
        text = (sep if sep is not None else " ").join(map(str, values)) + (end if end is not None else "\n")
        parts = getattr(self.sink, "parts", None)
        if file is not None and file is not sys.stdout and file is not sys.stderr:
            file.write(text)
        elif parts is not None:
            parts.append((file is sys.stderr, text))
        # else printed outside a command (a handler on the clock thread): dropped, the monitor's own
        # stdout (--console) must not get stray bytes

    def _run(self, w, function):
        """Runs function() with print() going to writer w; returns its result."""
        previous = getattr(self.sink, "parts", None)
        self.sink.parts = parts = []
        try:
            return function()
        finally:
            self.sink.parts = previous
            for is_error, text in parts:
                text = text.replace("\n", "\r\n")
                if is_error:
                    w.error(text)
                else:
                    w.write(text)

    # -- the three ways in -----------------------------------------------------------------------
    def execute_file(self, path, header, w):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                code = compile(f.read(), path, "exec")
            self._run(w, lambda: exec(code, self.scope))
        except SyntaxError as e:
            raise CommandError(header, e.msg)  # noqa: B904 - the monitor prints this text instead
        except Exception as e:  # RecoverableException(e)
            raise CommandError(header, message(e))  # noqa: B904 - the monitor prints this text instead
        return True

    def execute_command(self, text, header, w):
        try:
            code = compile(text, "<string>", "exec")
        except SyntaxError as e:  # SyntaxErrorException -> "Line : {0}\n{1}"
            raise CommandError(header, "Line : %s" % e.lineno, e.msg)  # noqa: B904 - the monitor prints this text instead
        try:
            self._run(w, lambda: exec(code, self.scope))
        except Exception as e:  # RecoverableException(e): the exception's message
            raise CommandError(header, message(e))  # noqa: B904 - the monitor prints this text instead
        return True

    def has_command(self, name):
        return callable(self.scope.get("mc_" + name))

    def execute_builtin(self, toks, header, w):
        """ExecuteBuiltinCommand: runs mc_<name> with the tokens' values."""
        name = toks[0].value
        function = self.scope["mc_" + name]
        arguments = [self.value(t, header) for t in toks[1:]]
        try:
            result = self._run(w, lambda: function(*arguments))
        except Exception as e:
            details = ["\t" + line for line in message(e).split("\n")]
            failed = "Command '%s %s' failed" % (name, " ".join(map(dotnet_str, arguments)))
            raise CommandError(header, failed, *details)  # noqa: B904 - the monitor prints this text instead
        if result is not None and result is not True:
            w.error('Command %s failed, returning "%s".' % (name, dotnet_str(result)))
        return True

    def value(self, tok, header):
        """Monitor.GetTokenValue."""
        if tok.kind in ("str", "path"):
            return tok.value
        text = tok.value
        number = parse_number(text)
        if number is not None:
            return number
        if NUMBER.match(text):
            return float(text)
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        found = pyapi.element(text)
        if found is None:
            raise CommandError(header, "No such emulation element: %s" % text)
        return found


def message(e):
    return str(e) or type(e).__name__


def dotnet_str(value):
    """How .NET's String.Join shows a value."""
    if value is True or value is False:
        return "True" if value else "False"
    to_string = getattr(value, "ToString", None)
    return to_string() if callable(to_string) else str(value)
