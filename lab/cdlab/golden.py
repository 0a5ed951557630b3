"""Golden images: a base image plus an Ansible playbook run into it through the
community.general.chroot connection (seconds, where the same work in a TCG VM
takes minutes), cached by a hash of everything that goes into them."""

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time

from .common import REPO, LabError, cache_dir, locked, log, state_root
from .image import image_ready, recipe_hash


def tree_hash(path):
    if os.path.isdir(path):
        return recipe_hash(path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def golden_key(base, inputs):
    digest = hashlib.sha256(os.path.basename(os.path.normpath(base)).encode())
    for path in sorted(set(os.path.abspath(p) for p in inputs)):
        digest.update(("%s\0%s\0" % (os.path.relpath(path, REPO), tree_hash(path))).encode())
    return digest.hexdigest()[:16]


def collections_dir():
    """An ANSIBLE_COLLECTIONS_PATH entry that resolves clusterducks.vdisk to this checkout."""
    root = os.path.join(state_root(), "collections")
    link = os.path.join(root, "ansible_collections", "clusterducks", "vdisk")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.realpath(link) != REPO:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(REPO, link)
    return root


def build_golden(base, playbook, extra_vars=(), inputs=()):
    """Run PLAYBOOK into a copy of BASE's root filesystem; returns the image dir."""
    if not image_ready(base):
        raise LabError("%s is not a lab image directory" % base)
    # The collection's roles are always part of the key: playbooks use them.
    key = golden_key(base, [playbook, os.path.join(REPO, "roles"), *extra_vars, *inputs])
    path = os.path.join(cache_dir(), "golden", key)
    with locked(path + ".lock", "golden image %s" % key):
        if image_ready(path):
            os.utime(path)
            return path
        if os.geteuid() != 0:
            raise LabError("building a golden image needs root (loop mount, chroot)")
        log("building golden image %s from %s with %s" % (key, os.path.basename(base), os.path.relpath(playbook, REPO)))
        started = time.monotonic()
        work = path + ".work"
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(os.path.join(work, "root"))
        subprocess.run(["cp", "--sparse=always", os.path.join(base, "rootfs.img"), work], check=True)
        for name in ("id_ed25519",):
            shutil.copy2(os.path.join(base, name), work)
        root = os.path.join(work, "root")
        mounted = []
        try:
            subprocess.run(["mount", "-o", "loop", os.path.join(work, "rootfs.img"), root], check=True)
            mounted.append(root)
            for fs in ("proc", "sys", "dev"):
                target = os.path.join(root, fs)
                subprocess.run(["mount", "--rbind", "/" + fs, target], check=True)
                subprocess.run(["mount", "--make-rslave", target], check=True)
                mounted.append(target)
            env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_dir() + ":" + os.path.join(REPO, ".ansible", "collections"),
                       ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1")
            playbook_bin = os.environ.get("CDLAB_ANSIBLE_PLAYBOOK", os.path.join(REPO, ".venv", "bin", "ansible-playbook"))
            cmd = [playbook_bin, "-i", "%s," % root, "-c", "community.general.chroot",
                   "-e", "golden_image_hosts=all", "-e", "ansible_python_interpreter=/usr/bin/python3", playbook]
            for f in extra_vars:
                cmd += ["-e", "@" + os.path.abspath(f)]
            # Its output goes to stderr: stdout carries only the image directory.
            subprocess.run(cmd, check=True, env=env, stdout=sys.stderr)
            boot = os.path.join(root, "boot")
            kernels = sorted(n for n in os.listdir(boot) if n.startswith("vmlinuz-"))
            if len(kernels) != 1:
                raise LabError("the golden image must hold exactly one kernel, found %s" % kernels)
            kver = kernels[0][len("vmlinuz-"):]
            shutil.copyfile(os.path.join(boot, kernels[0]), os.path.join(work, "vmlinuz"))
            shutil.copyfile(os.path.join(boot, "initrd.img-" + kver), os.path.join(work, "initrd.img"))
            with open(os.path.join(work, "manifest.txt"), "w") as f:
                f.write("golden: %s\nbase: %s\nplaybook: %s\nkernel: %s\n"
                        % (key, os.path.basename(os.path.normpath(base)), os.path.relpath(playbook, REPO), kver))
        finally:
            for target in reversed(mounted):
                subprocess.run(["umount", "-R", target], check=False)
        os.rmdir(root)
        os.rename(work, path)
        log("built golden image %s in %.0f s" % (key, time.monotonic() - started))
    return path
