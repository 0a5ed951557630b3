"""Which cached images the defined VMs still use, in every lab state dir.

The image cache is shared by every checkout (each with its own .lab state
dir) and every CI run. A VM's root.qcow2 is a copy-on-write overlay whose
backing file is its image's rootfs.img: deleting that image breaks the VM.
So each state dir that defines a VM is recorded in the cache
(state-dirs/<hash>, a symlink to it), and pruning looks at every VM of every
recorded state dir.
"""

import contextlib
import hashlib
import json
import os
import struct

from .common import LabError, cache_dir, log, state_root


def state_dirs_dir():
    return os.path.join(cache_dir(), "state-dirs")


def record_state_root():
    """Record this state dir in the cache, for a prune run from anywhere."""
    root = os.path.abspath(state_root())
    link = os.path.join(state_dirs_dir(), hashlib.sha256(root.encode()).hexdigest()[:16])
    with contextlib.suppress(OSError):
        if os.readlink(link) == root:
            return
    try:
        os.makedirs(state_dirs_dir(), exist_ok=True)
        tmp = "%s.%d.tmp" % (link, os.getpid())
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(root, tmp)
        os.replace(tmp, link)
    except OSError as e:
        # Not fatal: the VM works; only a prune run from another state dir
        # would not know about it.
        log("cannot record the lab state dir %s in %s: %s" % (root, state_dirs_dir(), e))


def state_roots():
    """This state dir and every recorded one that still exists. A recorded
    one that is gone (a removed checkout) is forgotten: it has no VMs left."""
    roots = {os.path.realpath(state_root())}
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(state_dirs_dir()):
            link = os.path.join(state_dirs_dir(), name)
            if not os.path.islink(link):
                continue
            if os.path.isdir(link):
                roots.add(os.path.realpath(link))
            elif not name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(link)
    return sorted(roots)


def qcow2_backing_file(path):
    """The backing file named in a qcow2 header, or None. Read from the header
    (magic, version, backing_file_offset, backing_file_size, big-endian), so
    that no qemu-img runs; a relative name is relative to the overlay."""
    with open(path, "rb") as f:
        header = f.read(20)
        if len(header) < 20 or header[:4] != b"QFI\xfb":
            return None
        offset, size = struct.unpack(">QI", header[8:20])
        if not offset or not size:
            return None
        f.seek(offset)
        name = f.read(size).decode("utf-8", "surrogateescape")
    return os.path.join(os.path.dirname(os.path.abspath(path)), name)


def images_in_use():
    """{real path of an image directory: [the VMs that use it]}, over every VM
    directory of every state dir: the image its vm.json names, and the
    directory of its root overlay's backing file. These are one and the same,
    except while a define or a set-image is under way or was cut short (the
    overlay is written before vm.json), which is why both count."""
    used = {}
    for root in state_roots():
        for vm_dir in _vm_dirs(root):
            who = "VM %s of lab %s (%s)" % (os.path.basename(vm_dir),
                                            os.path.basename(os.path.dirname(vm_dir)), root)
            if not os.access(vm_dir, os.R_OK | os.X_OK):
                raise LabError("cannot read %s: run this as its owner or root, so that "
                               "no image it uses is deleted" % vm_dir)
            images = []
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                with open(os.path.join(vm_dir, "vm.json")) as f:
                    images.append(json.load(f)["image"])
            with contextlib.suppress(OSError):
                backing = qcow2_backing_file(os.path.join(vm_dir, "root.qcow2"))
                if backing:
                    images.append(os.path.dirname(backing))
            for image in images:
                used.setdefault(os.path.realpath(image), []).append(who)
    return used


def _vm_dirs(root):
    """<root>/<lab>/<vm>/ directories holding a vm.json or a root.qcow2."""
    with contextlib.suppress(OSError):
        for lab in sorted(os.listdir(root)):
            lab_dir = os.path.join(root, lab)
            if not os.path.isdir(lab_dir):
                continue
            with contextlib.suppress(OSError):
                for vm in sorted(os.listdir(lab_dir)):
                    vm_dir = os.path.join(lab_dir, vm)
                    if not os.path.isdir(vm_dir):
                        continue
                    if not os.access(vm_dir, os.R_OK | os.X_OK):
                        yield vm_dir  # unreadable: images_in_use() says so
                    elif any(os.path.exists(os.path.join(vm_dir, f)) for f in ("vm.json", "root.qcow2")):
                        yield vm_dir
