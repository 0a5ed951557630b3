"""What every part of the lab tool uses: where things live, errors, logging,
the flock and the atomic JSON write."""

import contextlib
import fcntl
import importlib.util
import json
import os
import sys

LAB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # lab/
REPO = os.path.dirname(LAB_DIR)
IMAGE_RECIPE = os.path.join(LAB_DIR, "image")


def _load_rules():
    """The collection's rules.py (names, sizes, IQNs), so the lab reads them as the modules do."""
    path = os.path.join(REPO, "plugins", "module_utils", "rules.py")
    spec = importlib.util.spec_from_file_location("clusterducks_vdisk_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rules = _load_rules()


class LabError(Exception):
    """A failure the user can act on; printed without a traceback."""


def cache_dir():
    return os.environ.get("CDLAB_CACHE", "/var/cache/clusterducks-lab")


def state_root():
    return os.environ.get("CDLAB_STATE", os.path.join(REPO, ".lab"))


def log(msg):
    print("cdlab: %s" % msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(path, what=None):
    """An exclusive flock on PATH for the with-block: concurrent builds of one
    image, or commands on one lab, wait for each other. The holder writes who
    it is into the file, so that a waiter can say what it waits for.

    A lock file can be deleted by its holder (destroy removes the lab's
    directory, pruning an image's lock): a waiter then holds a lock on a file
    that is gone while a newcomer locks a new one, so after getting the lock,
    check that PATH is still the file locked, and start over if not."""
    while True:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # "a+", not "w": a waiter must not wipe the holder's note.
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                log("waiting for %s, held by %s" % (what or path, f.read().strip() or "another process"))
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                current = os.path.samestat(os.fstat(f.fileno()), os.stat(path))
            except FileNotFoundError:
                current = False
            if not current:
                continue
            f.seek(0)
            f.truncate()
            f.write("pid %d (%s)\n" % (os.getpid(), " ".join(sys.argv)))
            f.flush()
            yield
            return


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
