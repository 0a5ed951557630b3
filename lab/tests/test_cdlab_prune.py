"""Pruning the image cache never deletes an image that a defined VM still
uses as its root disk's backing file, in this lab state dir or any other."""

import os
import shutil
import struct
import sys
import types

import pytest

LAB = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, LAB)
import cdlab  # noqa: E402

OLD = 30 * 86400


def cached_image(name, age=OLD):
    """A ready image in the cache, last used AGE seconds ago."""
    path = os.path.join(cdlab.cache_dir(), "images", name)
    os.makedirs(path)
    for f in cdlab.IMAGE_FILES:
        with open(os.path.join(path, f), "wb") as out:
            out.write(b"x")
    old = os.path.getmtime(path) - age
    os.utime(path, (old, old))
    return path


def defined_vm(lab_name, name, image, index=0):
    """A VM as define leaves it, without the overlay (qemu-img) part."""
    vm = cdlab.Lab(lab_name).vm(name)
    os.makedirs(vm.path)
    vm.save_conf({"name": name, "index": index, "image": image, "memory": 1024, "cpus": 2,
                  "disks": [], "ephemeral": False, "storage_ip": "10.77.0.11", "ssh_port": 40000})
    return vm


def cached():
    return sorted(n for n in os.listdir(os.path.join(cdlab.cache_dir(), "images"))
                  if not n.endswith(".lock"))


def test_prune_keeps_an_image_a_defined_vm_boots(capsys):
    keep = cached_image("current", age=0)
    used = cached_image("used")
    cached_image("unused")
    defined_vm("t", "storage", used)
    cdlab.prune_images(keep=keep)
    assert cached() == ["current", "used"]
    assert "kept cached image used: still the backing file of VM storage of lab t" in capsys.readouterr().err
    # Once the VM is gone, the image goes at the next prune.
    assert cdlab.main(["--lab", "t", "destroy"]) == 0
    cdlab.prune_images(keep=keep)
    assert cached() == ["current"]


@pytest.fixture
def fake_build(monkeypatch):
    """ensure_image() builds by writing the image's files, not by running
    lab/image/build.sh."""
    def run(argv, check):
        assert argv[0].endswith("/build.sh") and check
        os.makedirs(argv[1])
        for f in cdlab.IMAGE_FILES:
            with open(os.path.join(argv[1], f), "wb") as out:
                out.write(b"x")

    monkeypatch.setattr(cdlab.image, "subprocess", types.SimpleNamespace(run=run))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return os.path.basename(cdlab.image_dir())


def test_image_prunes_but_keeps_what_a_vm_uses(fake_build):
    # `cdlab image` builds the current image, then prunes what is a week old;
    # `cdlab image --prune` every other image: neither touches a used one.
    cached_image("used")
    cached_image("unused")
    cached_image("recent", age=86400)
    defined_vm("t", "storage", os.path.join(cdlab.cache_dir(), "images", "used"))
    assert cdlab.main(["image"]) == 0
    assert cached() == sorted([fake_build, "recent", "used"])
    assert cdlab.main(["image", "--prune"]) == 0
    assert cached() == sorted([fake_build, "used"])


def test_a_vm_of_another_state_dir_keeps_its_image(state, monkeypatch):
    # Another checkout (its own .lab) defined a VM on the shared cache.
    keep = cached_image("current", age=0)
    used = cached_image("used")
    monkeypatch.setenv("CDLAB_STATE", str(state / "other-checkout" / ".lab"))
    defined_vm("molecule-x", "node01", used)
    monkeypatch.setenv("CDLAB_STATE", str(state / "state"))
    cdlab.prune_images(keep=keep)
    assert cached() == ["current", "used"]
    # That checkout removed: its VMs are gone, and so is the image at the next prune.
    shutil.rmtree(state / "other-checkout")
    cdlab.prune_images(keep=keep)
    assert cached() == ["current"]
    assert cdlab.refs.state_roots() == [os.path.realpath(state / "state")]
    assert os.listdir(cdlab.refs.state_dirs_dir()) == []


@pytest.mark.skipif(not shutil.which("qemu-img"), reason="needs qemu-img")
@pytest.mark.parametrize("case", ["vm.json names another image", "no vm.json yet"])
def test_the_root_overlays_backing_file_counts(case):
    # A define or set-image cut short between the overlay and vm.json.
    keep = cached_image("current", age=0)
    used = cached_image("used")
    with open(os.path.join(used, "rootfs.img"), "wb") as f:
        f.truncate(1 << 20)
    vm = defined_vm("t", "storage", keep)
    vm.make_root(used)
    if case == "no vm.json yet":
        os.unlink(vm.conf_path)
    assert cdlab.refs.qcow2_backing_file(vm.file("root.qcow2")) == os.path.join(used, "rootfs.img")
    cdlab.prune_images(keep=keep)
    assert cached() == ["current", "used"]


def qcow2_header(backing):
    """The first bytes of a qcow2 v3 file naming BACKING at offset 512."""
    name = backing.encode()
    head = b"QFI\xfb" + struct.pack(">IQI", 3, 512 if name else 0, len(name))
    return head.ljust(512, b"\0") + name


@pytest.mark.parametrize("backing,expected", [
    ("/cache/images/abc/rootfs.img", "/cache/images/abc/rootfs.img"),
    ("../base/rootfs.img", "{dir}/../base/rootfs.img"),   # relative to the overlay
    ("", None),                                           # no backing file
])
def test_qcow2_backing_file_from_the_header(tmp_path, backing, expected):
    path = tmp_path / "root.qcow2"
    path.write_bytes(qcow2_header(backing))
    assert cdlab.refs.qcow2_backing_file(str(path)) == (expected and expected.format(dir=tmp_path))


def test_a_file_that_is_not_qcow2_has_no_backing_file(tmp_path):
    (tmp_path / "disk1.raw").write_bytes(b"\0" * 4096)
    assert cdlab.refs.qcow2_backing_file(str(tmp_path / "disk1.raw")) is None


def test_an_unreadable_vm_stops_the_prune(fake_build, monkeypatch, capsys):
    # A VM directory (mode 0700) of another user: which image it uses cannot
    # be told, so nothing is pruned. Faked through os.access: tests run as root.
    cached_image("unknown")
    vm = defined_vm("t", "storage", "/elsewhere")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if p == vm.path else real_access(p, m))
    # `image` still gives the image it built (its prune is a side job) ...
    assert cdlab.main(["image"]) == 0
    out, err = capsys.readouterr()
    assert out == cdlab.image_dir() + "\n"
    assert "not pruning cached images: cannot read %s" % vm.path in err
    # ... but `image --prune`, asked to prune, fails and says why.
    assert cdlab.main(["image", "--prune"]) == 1
    assert "cdlab: error: cannot read %s" % vm.path in capsys.readouterr().err
    assert cached() == sorted([fake_build, "unknown"])
