"""A lab: a named set of VMs sharing one storage network, its state
(lab.json) and its lock."""

import contextlib
import json
import os
import socket

from .common import LabError, locked, state_root, write_json
from .net import free_port
from .vm import VM


class Lab:
    """A named set of VMs sharing one storage network."""

    def __init__(self, name):
        if not name or "/" in name or name.startswith("."):
            raise LabError("invalid lab name %r" % name)
        self.name = name
        self.path = os.path.join(state_root(), name)
        self.meta_path = os.path.join(self.path, "lab.json")
        self.meta = self._load()

    def _load(self):
        if os.path.exists(self.meta_path):
            with open(self.meta_path) as f:
                return json.load(f)
        return {"mcast_port": None, "next_index": 0}

    def save(self):
        os.makedirs(self.path, exist_ok=True)
        write_json(self.meta_path, self.meta)

    @property
    def mcast_port(self):
        if not self.meta["mcast_port"]:
            self.meta["mcast_port"] = free_port(socket.SOCK_DGRAM)
            self.save()
        return self.meta["mcast_port"]

    def vm(self, name):
        return VM(self, name)

    def vms(self):
        if not os.path.isdir(self.path):
            return []
        names = sorted(
            d for d in os.listdir(self.path)
            if os.path.exists(os.path.join(self.path, d, "vm.json"))
        )
        return [VM(self, n) for n in names]

    @contextlib.contextmanager
    def lock(self):
        """The lab lock: commands that change the lab's VMs (define, up, start,
        stop, kill, reboot, destroy, set-image) run one at a time. Only the
        commands take it, never Lab or VM methods, so it is never taken twice
        in one process (flock would wait for itself)."""
        with locked(os.path.join(self.path, ".lock"), "lab %s" % self.name):
            # Read lab.json again: whoever held the lock may have changed it
            # (next_index, mcast_port), and saving a stale copy would undo that.
            self.meta = self._load()
            yield
