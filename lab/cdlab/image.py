"""The lab image: built from Debian packages by lab/image/, cached by a hash
of that recipe, pruned when unused."""

import hashlib
import os
import shutil
import subprocess
import time

from .common import IMAGE_RECIPE, LabError, cache_dir, locked, log
from .refs import images_in_use


def recipe_hash(recipe_dir=IMAGE_RECIPE):
    """Hash of every file under the recipe: path, executable bit and content.
    The variants' package lists are not part of it (each variant's key is)."""
    digest = hashlib.sha256()
    for top, dirs, files in os.walk(recipe_dir):
        if top == os.fspath(recipe_dir) and "variants" in dirs:
            dirs.remove("variants")
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


# An image variant is the lab image plus lab/image/variants/<name>.txt (more
# packages, built on this host, never inside a TCG guest); the benchmarks use
# one for backends that only some storage hosts have (LVM thin, ZFS). Its key
# is the lab image's plus its name and a hash of its list.
VARIANTS = os.path.join(IMAGE_RECIPE, "variants")


def variant_key(variant=None):
    if not variant:
        return recipe_hash()
    path = os.path.join(VARIANTS, variant + ".txt")
    if not os.path.isfile(path):
        raise LabError("no image variant %r (lab/image/variants/*.txt)" % variant)
    with open(path, "rb") as f:
        return "%s-%s-%s" % (recipe_hash(), variant, hashlib.sha256(f.read()).hexdigest()[:8])


def image_dir(key=None):
    return os.path.join(cache_dir(), "images", key or recipe_hash())


def image_ready(path):
    return all(os.path.exists(os.path.join(path, f)) for f in IMAGE_FILES)


def ensure_image(rebuild=False, variant=None):
    path = image_dir(variant_key(variant))
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
        subprocess.run([os.path.join(IMAGE_RECIPE, "build.sh"), path] + ([variant] if variant else []), check=True)
        log("built lab image in %.0f s" % (time.monotonic() - started))
    try:
        prune_images(keep=path, older_than_days=7)
    except LabError as e:
        # The image is there: a prune that cannot run is no reason to fail.
        log("not pruning cached images: %s" % e)
    return path


def prune_images(keep, older_than_days=0):
    """Delete cached images other than ``keep`` unused for that many days,
    but never one that a defined VM, in any lab state dir, still uses."""
    images = os.path.dirname(keep)
    cutoff = time.time() - older_than_days * 86400
    for name in sorted(os.listdir(images)):
        path = os.path.join(images, name)
        if path == keep or not os.path.isdir(path) or os.path.getmtime(path) > cutoff:
            continue
        with locked(path + ".lock", "cached image %s" % name):
            # Asked for each image right before deleting it, not once up
            # front: a VM defined meanwhile counts too.
            users = images_in_use().get(os.path.realpath(path))
            if users:
                log("kept cached image %s: still the backing file of %s" % (name, "; ".join(users)))
                continue
            shutil.rmtree(path, ignore_errors=True)
        os.unlink(path + ".lock")
        log("pruned cached image %s" % name)
