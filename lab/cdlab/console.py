"""A VM's serial console log (console.log, console.log.prev for the boot
before)."""

import contextlib
import re
import time

from .common import LabError


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
