"""The lab image: built from Debian packages by lab/image/, cached by a hash
of that recipe, pruned when unused."""

import hashlib
import os
import shutil
import subprocess
import time

from .common import IMAGE_RECIPE, LabError, cache_dir, locked, log


def recipe_hash(recipe_dir=IMAGE_RECIPE):
    """Hash of every file under the recipe: path, executable bit and content."""
    digest = hashlib.sha256()
    for top, dirs, files in os.walk(recipe_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, recipe_dir)
            mode = "x" if os.access(path, os.X_OK) else "-"
            digest.update(("%s\0%s\0" % (rel, mode)).encode())
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:16]


IMAGE_FILES = ("rootfs.img", "vmlinuz", "initrd.img", "id_ed25519", "manifest.txt")


def image_dir(key=None):
    return os.path.join(cache_dir(), "images", key or recipe_hash())


def image_ready(path):
    return all(os.path.exists(os.path.join(path, f)) for f in IMAGE_FILES)


def ensure_image(rebuild=False):
    path = image_dir()
    with locked(path + ".lock", "lab image %s" % os.path.basename(path)):
        if rebuild and os.path.exists(path):
            shutil.rmtree(path)
        if image_ready(path):
            os.utime(path)  # last use, for prune_images()
            return path
        if os.geteuid() != 0:
            raise LabError("building the lab image needs root (mmdebstrap, chroot)")
        log("building lab image %s (a few minutes, once per recipe)" % os.path.basename(path))
        started = time.monotonic()
        subprocess.run([os.path.join(IMAGE_RECIPE, "build.sh"), path], check=True)
        log("built lab image in %.0f s" % (time.monotonic() - started))
    prune_images(keep=path, older_than_days=7)
    return path


def prune_images(keep, older_than_days=0):
    """Delete cached images other than ``keep`` unused for that many days."""
    images = os.path.dirname(keep)
    cutoff = time.time() - older_than_days * 86400
    for name in os.listdir(images):
        path = os.path.join(images, name)
        if path == keep or not os.path.isdir(path) or os.path.getmtime(path) > cutoff:
            continue
        with locked(path + ".lock", "cached image %s" % name):
            shutil.rmtree(path, ignore_errors=True)
        os.unlink(path + ".lock")
        log("pruned cached image %s" % name)
