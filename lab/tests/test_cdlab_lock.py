"""The lab lock: stop, kill, destroy and reboot wait while another process
holds it, act only once they hold it, and never wait for themselves.

A VM here is a vm.json and a qemu.pid naming a stand-in process (a sleep);
its QMP "system_powerdown" is faked as a SIGTERM to the stand-in, the boot
of reboot as a function that records what it was called with."""

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

LAB = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, LAB)
import cdlab  # noqa: E402

# Another process holding a lab's lock until its stdin closes.
HOLD = """
import sys
sys.path.insert(0, sys.argv[1])
import cdlab
with cdlab.Lab(sys.argv[2]).lock():
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder():
    procs = []

    def hold(lab_name):
        p = subprocess.Popen([sys.executable, "-c", HOLD, LAB, lab_name],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline() == "held\n"
        return p

    yield hold
    for p in procs:
        p.kill()
        p.wait()


def release(p):
    p.stdin.close()
    assert p.wait(timeout=10) == 0


@pytest.fixture
def qemu_stand_in():
    """Start a process that a VM's qemu.pid can name. A thread reaps it at
    once when it dies: a zombie would still look running."""
    procs = []

    def start():
        p = subprocess.Popen(["sleep", "300"])
        threading.Thread(target=p.wait, daemon=True).start()
        procs.append(p)
        return p.pid

    yield start
    for p in procs:
        with contextlib.suppress(ProcessLookupError):  # already gone
            p.kill()


def running_vm(lab, name, pid, index=0):
    vm = lab.vm(name)
    os.makedirs(vm.path)
    vm.save_conf({
        "name": name, "index": index, "image": "/cache/img", "memory": 1024, "cpus": 2,
        "disks": [], "ephemeral": False, "storage_ip": "10.77.0.%d" % (11 + index),
        "ssh_port": 40000 + index,
    })
    with open(vm.file("qemu.pid"), "w") as f:
        f.write("%d\n" % pid)
    return vm


def lab_is_locked(lab):
    """Whether someone holds the lab lock. A new open file description
    conflicts with every other one, even one of this process."""
    with open(os.path.join(lab.path, ".lock"), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


@pytest.fixture
def actions(monkeypatch):
    """Record each power-off, power-cut and boot, with whether the lab lock
    was held at that moment."""
    seen = []
    real_kill = cdlab.VM.kill

    def qmp(vm, command):
        seen.append((command, vm.name, lab_is_locked(vm.lab)))
        if command == "system_powerdown" and vm.pid:
            os.kill(vm.pid, signal.SIGTERM)  # the guest powers off
        return True

    def kill(vm):
        seen.append(("kill", vm.name, lab_is_locked(vm.lab)))
        return real_kill(vm)

    def boot(lab, vms, timeout):
        seen.append(("boot", ",".join(vm.name for vm in vms), lab_is_locked(lab)))
        return {vm.name: 0.0 for vm in vms}

    monkeypatch.setattr(cdlab.VM, "qmp", qmp)
    monkeypatch.setattr(cdlab.VM, "kill", kill)
    monkeypatch.setattr(cdlab.commands, "boot", boot)
    return seen


def run_in_thread(argv):
    result = {}
    thread = threading.Thread(target=lambda: result.update(rc=cdlab.main(argv)), daemon=True)
    thread.start()
    return thread, result


EXPECTED = {
    "stop": [("system_powerdown", "storage", True)],
    "kill": [("kill", "storage", True)],
    "destroy": [("kill", "storage", True)],
    "reboot": [("system_powerdown", "storage", True), ("boot", "storage", True)],
}


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_the_command_waits_for_the_lab_lock(command, holder, qemu_stand_in, actions, capsys):
    lab = cdlab.Lab("t")
    vm = running_vm(lab, "storage", qemu_stand_in())
    held = holder("t")

    thread, result = run_in_thread(["--lab", "t", command, "storage"])
    # It says whom it waits for, then waits, having touched nothing.
    err = ""
    deadline = time.monotonic() + 10
    while "waiting" not in err and time.monotonic() < deadline:
        time.sleep(0.05)
        err += capsys.readouterr().err
    assert "cdlab: waiting for lab t, held by pid %d" % held.pid in err
    time.sleep(0.5)
    assert thread.is_alive()
    assert actions == [] and vm.running

    release(held)
    thread.join(30)
    assert not thread.is_alive() and result == {"rc": 0}
    # Everything it did, it did holding the lock; and it let go after.
    assert actions == EXPECTED[command]
    assert not vm.running
    assert os.path.exists(vm.path) == (command != "destroy")
    if os.path.isdir(lab.path):
        assert not lab_is_locked(lab)


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_the_command_runs_at_once_when_the_lock_is_free(command, qemu_stand_in, actions, capsys):
    # Nothing in it takes the lock a second time (flock would wait for itself).
    lab = cdlab.Lab("t")
    running_vm(lab, "storage", qemu_stand_in())
    thread, result = run_in_thread(["--lab", "t", command])
    thread.join(30)
    assert not thread.is_alive() and result == {"rc": 0}
    assert actions == EXPECTED[command]
    assert "waiting" not in capsys.readouterr().err


def test_stop_powers_off_all_the_vms_at_once(qemu_stand_in, actions, monkeypatch):
    # Under the one lock, stop_all still asks every VM to power off before
    # waiting for any of them.
    events = []
    real_wait = cdlab.VM.wait_exit

    def wait_exit(vm, timeout):
        events.append(("wait", vm.name))
        return real_wait(vm, timeout)

    monkeypatch.setattr(cdlab.VM, "wait_exit", wait_exit)
    lab = cdlab.Lab("t")
    running_vm(lab, "a", qemu_stand_in(), 0)
    running_vm(lab, "b", qemu_stand_in(), 1)
    assert cdlab.main(["--lab", "t", "stop", "a", "b"]) == 0
    assert [a[:2] for a in actions] == [("system_powerdown", "a"), ("system_powerdown", "b")]
    assert events[0] == ("wait", "a") and ("wait", "b") in events
    assert not any(vm.running for vm in lab.vms())


def test_destroy_of_the_last_vm_removes_the_lab_with_its_lock(qemu_stand_in):
    lab = cdlab.Lab("t")
    running_vm(lab, "storage", qemu_stand_in())
    assert cdlab.main(["--lab", "t", "destroy"]) == 0
    assert not os.path.exists(lab.path)


def test_a_lock_file_deleted_by_its_holder_still_excludes(tmp_path):
    """destroy removes the lab directory, lock file and all, while holding the
    lock. Whoever was waiting must end up holding the lock on the file that is
    there now, or a newcomer would lock that one at the same time."""
    path = str(tmp_path / "lab" / ".lock")
    waiting_holds = threading.Event()
    done = threading.Event()

    def waiter():
        with cdlab.locked(path, "test"):
            waiting_holds.set()
            done.wait(10)

    with cdlab.locked(path, "test"):
        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        time.sleep(0.5)  # the waiter now waits on the file about to go
        shutil.rmtree(tmp_path / "lab")
    assert waiting_holds.wait(10)
    with open(path, "a+") as f:
        with pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    done.set()
    thread.join(10)


def test_the_lock_reads_lab_json_again():
    # Two commands on one lab, each with a Lab read before it got the lock:
    # the second must see what the first saved (a VM index, the storage
    # network's port), not save its stale copy over it.
    first, second = cdlab.Lab("t"), cdlab.Lab("t")
    with first.lock():
        first.meta.update(next_index=3, mcast_port=47123)
        first.save()
    with second.lock():
        assert second.meta == {"next_index": 3, "mcast_port": 47123}
        assert second.mcast_port == 47123
