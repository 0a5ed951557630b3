"""SSH into the guests: the options, the command, waiting for it to answer."""

import os
import re
import subprocess
import time

from .common import LabError
from .console import console_tail, console_text

# What a boot that will never reach SSH prints: dracut's halt after a fatal
# error, or systemd's emergency shell.
BOOT_HALTED = re.compile(r"dracut: Refusing to continue|Entering emergency mode|You are in emergency mode")

SSH_OPTS = [
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=5",
]


def ssh_command(conf, args=()):
    """ssh argv for a VM of this definition (the image holds its key)."""
    key = os.path.join(conf["image"], "id_ed25519")
    return ["ssh", *SSH_OPTS, "-i", key, "-p", str(conf["ssh_port"]),
            "root@127.0.0.1", *args]


def ssh_probe(conf):
    """Try one SSH login; returns None if it worked, else why not (ssh's own
    words: refused, banner timeout, key refused, or hung)."""
    try:
        result = subprocess.run(ssh_command(conf, ["true"]), capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        # A login that hangs (sshd up, the guest's disk stalled) is "not yet", not a crash.
        return "ssh hung for 30 s"
    if result.returncode == 0:
        return None
    return "ssh exit %d: %s" % (result.returncode, result.stderr.strip()[-300:] or "(no message)")


def ssh_ok(conf):
    return ssh_probe(conf) is None


def storage_view(lab, pending, lines=12):
    """The last kernel lines of the lab's storage VM (its LIO logs each device's
    logins and dropped connections), when a device does not answer; '' if none."""
    if "storage" in pending:
        return ""
    storage = lab.vm("storage")
    if not os.path.exists(storage.file("vm.json")) or not storage.running:
        return ""
    dmesg = storage.ssh_run(["dmesg", "-T", "|", "tail", "-n", str(lines)], timeout=20)
    if not dmesg:
        return "\nstorage's kernel log: (no answer)"
    return "\nstorage's kernel log, last lines:\n  " + "\n  ".join(dmesg.splitlines())


def wait_for_ssh(vms, timeout):
    """Wait until every VM answers SSH; returns {name: seconds since start}."""
    pending = {vm.name: vm for vm in vms}
    took = {}
    why = {}  # the last failed login of each VM: what its timeout error ends with
    started = time.monotonic()
    deadline = started + timeout
    while pending:
        for name, vm in list(pending.items()):
            if not vm.running:
                raise LabError("%s stopped while booting; see %s; its console's last lines:\n  %s"
                               % (name, vm.file("console.log"), "\n  ".join(console_tail(vm))))
            halted = BOOT_HALTED.search(console_text(vm))
            if halted:
                # No SSH will come: say why now instead of after the timeout.
                raise LabError("%s stopped booting (%r on its console); its console's last lines:\n  %s"
                               % (name, halted.group(0), "\n  ".join(console_tail(vm))))
            why[name] = vm.ssh_probe()
            if why[name] is None:
                took[name] = time.monotonic() - getattr(vm, "started_at", started)
                del pending[name]
        if not pending:
            break
        if time.monotonic() > deadline:
            # The console first, then what the lab's storage host saw of the
            # devices (iSCSI logins and drops), then ssh's last answer: a CI log keeps the end.
            raise LabError("no SSH from %s after %d s; see their console.log. %s%s%s"
                           % (", ".join(sorted(pending)), timeout,
                              "".join("\n%s's console, last lines:\n  %s" % (name, "\n  ".join(console_tail(vm)))
                                      for name, vm in sorted(pending.items())),
                              storage_view(vms[0].lab, pending),
                              "".join("\n%s: last SSH attempt: %s" % (name, why.get(name))
                                      for name in sorted(pending))))
        time.sleep(1)
    return took
