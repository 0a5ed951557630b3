"""What every part of the lab tool uses: where things live, errors, logging,
the flock and the atomic JSON write."""

import contextlib
import fcntl
import json
import os
import sys

LAB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # lab/
REPO = os.path.dirname(LAB_DIR)
IMAGE_RECIPE = os.path.join(LAB_DIR, "image")


class LabError(Exception):
    """A failure the user can act on; printed without a traceback."""


def cache_dir():
    return os.environ.get("CDLAB_CACHE", "/var/cache/clusterducks-lab")


def state_root():
    return os.environ.get("CDLAB_STATE", os.path.join(REPO, ".lab"))


def log(msg):
    print("cdlab: %s" % msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(path):
    """An exclusive flock: concurrent builds of one image wait for each other."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
