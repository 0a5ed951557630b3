"""A VM's serial console log (console.log, console.log.prev for the boot
before)."""

import contextlib
import re
import time

from .common import LabError

# Terminal escapes (colours, cursor moves) that systemd writes to the console.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def wait_console(vm, pattern, timeout):
    """The first console line matching PATTERN (a regular expression), waiting
    up to TIMEOUT seconds for it."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(FileNotFoundError):
            with open(vm.file("console.log"), "rb") as f:
                for line in f.read().decode("utf-8", "replace").splitlines():
                    if regex.search(line):
                        return line
        if time.monotonic() > deadline:
            raise LabError("%s: no console line matching %r within %d s" % (vm.name, pattern, timeout))
        time.sleep(1)


def console_text(vm):
    """VM's console log as text, terminal escapes removed ('' if none yet)."""
    with contextlib.suppress(FileNotFoundError):
        with open(vm.file("console.log"), "rb") as f:
            return ANSI.sub("", f.read().decode("utf-8", "replace"))
    return ""


def console_tail(vm, lines=25):
    """The last non-empty lines of VM's console: what a failed boot or a hung
    shutdown shows, for logs that outlive the lab (CI keeps only its output)."""
    return [line.strip() for line in console_text(vm).splitlines() if line.strip()][-lines:]
