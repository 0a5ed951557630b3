"""Unit tests for the lab tool's logic (no VM is booted here; the Molecule
scenarios boot real ones)."""

import json
import os
import subprocess
import sys

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import cdlab  # noqa: E402


@pytest.fixture
def recipe(tmp_path):
    d = tmp_path / "recipe"
    (d / "overlay" / "etc").mkdir(parents=True)
    (d / "packages.txt").write_text("systemd\n")
    (d / "overlay" / "etc" / "hostname").write_text("cdlab\n")
    build = d / "build.sh"
    build.write_text("#!/bin/sh\n")
    build.chmod(0o755)
    return d


def test_recipe_hash_is_stable(recipe):
    assert cdlab.recipe_hash(str(recipe)) == cdlab.recipe_hash(str(recipe))
    assert len(cdlab.recipe_hash(str(recipe))) == 16


@pytest.mark.parametrize("change", ["content", "new_file", "rename", "exec_bit"])
def test_recipe_hash_changes_with_the_recipe(recipe, change):
    before = cdlab.recipe_hash(str(recipe))
    if change == "content":
        (recipe / "packages.txt").write_text("systemd\nfio\n")
    elif change == "new_file":
        (recipe / "overlay" / "etc" / "motd").write_text("")
    elif change == "rename":
        (recipe / "packages.txt").rename(recipe / "packages.list")
    elif change == "exec_bit":
        (recipe / "build.sh").chmod(0o644)
    assert cdlab.recipe_hash(str(recipe)) != before


def test_the_real_recipe_hashes():
    assert cdlab.recipe_hash() == cdlab.recipe_hash(cdlab.IMAGE_RECIPE)


@pytest.mark.parametrize("text,expected", [
    ("8G", 8 << 30), ("512M", 512 << 20), ("1.5G", 3 << 29), ("4096M", 4096 << 20),
    ("2GiB", 2 << 30), ("1t", 1 << 40), ("1GB", (10 ** 9 + (1 << 20) - 1) // (1 << 20) * (1 << 20)),
])
def test_parse_size(text, expected):
    assert cdlab.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "-1G", "0", "12Q", "lots"])
def test_parse_size_rejects(text):
    with pytest.raises(cdlab.LabError):
        cdlab.parse_size(text)


@pytest.mark.parametrize("name", ["", "a/b", "../x", ".hidden"])
def test_lab_names_are_checked(state, name):
    with pytest.raises(cdlab.LabError):
        cdlab.Lab(name)


@pytest.mark.parametrize("name", ["", "a b", "x/y", "a_b", "../up"])
def test_vm_names_are_checked(state, name):
    with pytest.raises(cdlab.LabError):
        cdlab.Lab("t").vm(name)


def conf(**over):
    c = {
        "name": "storage", "index": 3, "image": "/cache/img", "memory": 1024,
        "cpus": 2, "disks": [1 << 30, 2 << 30], "ephemeral": False,
        "storage_ip": "10.77.0.14", "ssh_port": 40022,
    }
    c.update(over)
    return c


def option(cmd, flag):
    """Every value given to a qemu flag."""
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == flag]


def test_qemu_command_tcg():
    cmd = cdlab.qemu_command(conf(), "/vm", 47000, "tcg")
    assert option(cmd, "-accel") == ["tcg,thread=multi"]
    assert option(cmd, "-cpu") == ["qemu64"]
    append = option(cmd, "-append")[0]
    assert "systemd.hostname=storage" in append
    assert "ip=10.77.0.14:::255.255.255.0::eth1:off" in append
    assert "console=ttyS0" in append


def test_qemu_command_kvm():
    cmd = cdlab.qemu_command(conf(), "/vm", 47000, "kvm")
    assert option(cmd, "-accel") == ["kvm"]
    assert option(cmd, "-cpu") == ["host"]


def test_qemu_command_disks_have_stable_serials():
    cmd = cdlab.qemu_command(conf(), "/vm", 47000, "tcg")
    devices = option(cmd, "-device")
    assert "virtio-blk-pci,drive=disk1,serial=cdlab-disk1" in devices
    assert "virtio-blk-pci,drive=disk2,serial=cdlab-disk2" in devices
    drives = option(cmd, "-drive")
    assert any("file=/vm/disk2.raw,format=raw" in d for d in drives)


def test_ephemeral_root_discards_writes_and_persistent_does_not():
    root = [d for d in option(cdlab.qemu_command(conf(ephemeral=True), "/vm", 1, "tcg"), "-drive")
            if "id=root" in d][0]
    assert root.endswith(",snapshot=on")
    root = [d for d in option(cdlab.qemu_command(conf(), "/vm", 1, "tcg"), "-drive")
            if "id=root" in d][0]
    assert "snapshot" not in root
    # Data disks are never snapshotted: they are the persistent part.
    data = [d for d in option(cdlab.qemu_command(conf(ephemeral=True), "/vm", 1, "tcg"), "-drive")
            if "id=disk" in d]
    assert data and not any("snapshot" in d for d in data)


def test_extra_forwards_are_on_loopback_too():
    cmd = cdlab.qemu_command(conf(forwards={"8443": 41000}), "/vm", 47001, "tcg")
    assert option(cmd, "-netdev")[0] == (
        "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22,hostfwd=tcp:127.0.0.1:41000-:8443")


def test_networks_stay_on_loopback():
    cmd = cdlab.qemu_command(conf(), "/vm", 47001, "tcg")
    mgmt, storage = option(cmd, "-netdev")
    assert mgmt == "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22"
    assert storage == "socket,id=storage,mcast=230.77.0.1:47001,localaddr=127.0.0.1"


def test_each_vm_has_its_own_macs():
    def macs(c):
        return [d.split("mac=")[1].split(",")[0]
                for d in option(cdlab.qemu_command(c, "/vm", 1, "tcg"), "-device")
                if "mac=" in d]

    a, b = macs(conf(index=0)), macs(conf(index=1))
    assert len(set(a + b)) == 4


def test_dump_yaml_round_trips():
    data = {"all": {"children": {"g": {"hosts": {
        "storage": {"ansible_port": 4022, "ansible_ssh_common_args": "-o A=b -o C=d",
                    "cdlab_disks": ["/dev/disk/by-id/virtio-cdlab-disk1"]},
        "device": {}}}}}}
    assert yaml.safe_load("\n".join(cdlab.dump_yaml(data))) == data


def fake_vm(lab, name, running, index):
    vm = lab.vm(name)
    os.makedirs(vm.path)
    vm.save_conf(conf(name=name, index=index, ssh_port=40000 + index,
                      storage_ip="10.77.0.%d" % (11 + index)))
    if running:
        with open(vm.file("qemu.pid"), "w") as f:
            f.write(str(os.getpid()))  # a pid that surely exists
    return vm


def test_inventory_lists_only_running_vms(state):
    lab = cdlab.Lab("t-1")
    fake_vm(lab, "storage", True, 0)
    fake_vm(lab, "device", False, 1)
    path = cdlab.write_inventory(lab)
    inv = yaml.safe_load(open(path))
    hosts = inv["all"]["children"]["cdlab_t_1"]["hosts"]
    assert list(hosts) == ["storage"]
    h = hosts["storage"]
    assert h["ansible_host"] == "127.0.0.1"
    assert h["ansible_port"] == 40000
    assert h["ansible_ssh_private_key_file"] == "/cache/img/id_ed25519"
    assert h["cdlab_storage_ip"] == "10.77.0.11"


def test_a_stale_pid_file_is_not_running(state):
    lab = cdlab.Lab("t")
    vm = fake_vm(lab, "storage", False, 0)
    with open(vm.file("qemu.pid"), "w") as f:
        f.write("999999999")
    assert not vm.running


def test_status_and_destroy_without_vms(state, capsys):
    assert cdlab.main(["--lab", "empty", "status"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cdlab.main(["--lab", "empty", "destroy"]) == 0


def test_unknown_vm_is_a_clear_error(state, capsys):
    assert cdlab.main(["--lab", "t", "stop", "nope"]) == 1
    assert "no such VM in lab t: nope" in capsys.readouterr().err


def test_image_cache_is_keyed_by_recipe(state):
    assert cdlab.image_dir().startswith(str(state / "cache" / "images"))
    assert cdlab.image_dir().endswith(cdlab.recipe_hash())
    assert not cdlab.image_ready(cdlab.image_dir())


def test_prune_keeps_the_current_and_recent_images(state):
    images = state / "cache" / "images"
    for name in ("current", "recent", "old"):
        (images / name).mkdir(parents=True)
        (images / (name + ".lock")).write_text("")
    old = os.path.getmtime(images / "old") - 30 * 86400
    os.utime(images / "old", (old, old))
    cdlab.prune_images(keep=str(images / "current"), older_than_days=7)
    assert sorted(os.listdir(images)) == ["current", "current.lock", "recent", "recent.lock"]
    cdlab.prune_images(keep=str(images / "current"))
    assert sorted(os.listdir(images)) == ["current", "current.lock"]


LAB = os.path.join(os.path.dirname(__file__), "..")


@pytest.mark.parametrize("argv,env", [
    (["lab/cdlab"], {}),                                   # how the Makefile, Molecule and scripts call it
    (["-m", "cdlab"], {"PYTHONPATH": "lab"}),              # the package on the path
])
def test_the_package_runs_as_a_command(state, argv, env):
    result = subprocess.run([sys.executable, *argv, "--lab", "cli", "status"], cwd=os.path.join(LAB, ".."),
                            env=dict(os.environ, **env), capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "[]\n", "")


def test_demo_imports_the_package_for_collections_dir(state):
    # lab/demo/demo.sh: sys.path.insert(0, "lab"); import cdlab; cdlab.collections_dir()
    code = 'import sys; sys.path.insert(0, "lab"); import cdlab; print(cdlab.collections_dir())'
    result = subprocess.run([sys.executable, "-c", code], cwd=os.path.join(LAB, ".."),
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == str(state / "state" / "collections")
    link = state / "state" / "collections" / "ansible_collections" / "clusterducks" / "vdisk"
    assert os.path.realpath(link) == os.path.realpath(os.path.join(LAB, ".."))


def test_shutdown_report_names_the_units_systemd_waited_on(state):
    from cdlab.vm import shutdown_report
    lab = cdlab.Lab("t")
    vm = fake_vm(lab, "device", False, 0)
    with open(vm.file("console.log"), "wb") as f:
        f.write(b"[  OK  ] Stopped ssh.service\r\n"
                b"[  \x1b[0;31m*\x1b[0;1;31m*\x1b[0m] A stop job is running for "
                b"\x1b[0;1;39mUser Manager for UID 0\x1b[0m (12s / 1min 30s)\r\n"
                b"[  \x1b[0;31m*\x1b[0m] A stop job is running for "
                b"\x1b[0;1;39mUser Manager for UID 0\x1b[0m (13s / 1min 30s)\r\n"
                b"[  225.257917] reboot: Power down\r\n")
    waited, tail = shutdown_report(vm)
    assert waited == ["User Manager for UID 0"]
    assert tail[-1] == "[  225.257917] reboot: Power down"


def test_shutdown_report_without_a_console(state):
    from cdlab.vm import shutdown_report
    vm = fake_vm(cdlab.Lab("t"), "device", False, 0)
    assert shutdown_report(vm) == ([], [])


def test_a_vm_that_stops_while_booting_shows_its_console_in_the_error(state):
    # CI keeps only the run's output: the error must carry why the boot failed.
    from cdlab.ssh import wait_for_ssh
    vm = fake_vm(cdlab.Lab("t"), "device", False, 0)
    with open(vm.file("console.log"), "wb") as f:
        f.write(b"".join(b"line %d\r\n" % n for n in range(40))
                + b"\x1b[0;31mdracut: FATAL: no boot record\x1b[0m\r\n")
    with pytest.raises(cdlab.LabError) as exc:
        wait_for_ssh([vm], 5)
    message = str(exc.value)
    assert "device stopped while booting" in message
    assert message.endswith("  dracut: FATAL: no boot record")
    assert "line 16\n" in message and "line 15\n" not in message  # the last 25 lines only


def test_a_boot_that_halted_fails_at_once_with_its_console(state):
    from cdlab.ssh import wait_for_ssh
    vm = fake_vm(cdlab.Lab("t"), "device", True, 0)
    with open(vm.file("console.log"), "wb") as f:
        f.write(b"clusterducks-vdisk: FATAL (login): refused\r\ndracut: Refusing to continue\r\n")
    with pytest.raises(cdlab.LabError) as exc:
        wait_for_ssh([vm], 600)
    assert "device stopped booting ('dracut: Refusing to continue'" in str(exc.value)
    assert "FATAL (login): refused" in str(exc.value)


def test_no_ssh_ends_with_the_console_and_why_the_last_login_failed(state, monkeypatch):
    # The boot looked fine on the console but SSH never answered: the error
    # must say what ssh said, last, where a short CI log still shows it.
    from cdlab import ssh
    vm = fake_vm(cdlab.Lab("t"), "device", True, 0)
    with open(vm.file("console.log"), "wb") as f:
        f.write(b"Debian GNU/Linux 12 node02 ttyS0\r\nnode02 login: \r\n")
    monkeypatch.setattr(type(vm), "ssh_probe", lambda self: "ssh exit 255: Connection refused")
    with pytest.raises(cdlab.LabError) as exc:
        ssh.wait_for_ssh([vm], 0)
    message = str(exc.value)
    assert "no SSH from device after 0 s" in message
    assert message.endswith("node02 login:\ndevice: last SSH attempt: ssh exit 255: Connection refused")


def test_no_ssh_from_a_device_shows_what_the_storage_host_saw(state, monkeypatch):
    from cdlab import ssh
    lab = cdlab.Lab("t")
    vm = fake_vm(lab, "device", True, 0)
    fake_vm(lab, "storage", True, 1)
    monkeypatch.setattr(type(vm), "ssh_probe", lambda self: "ssh hung for 30 s")
    asked = []
    monkeypatch.setattr(type(vm), "ssh_run", lambda self, argv, timeout=30: asked.append(self.name) or
                        "[x] iSCSI Login timeout on Network Portal 10.77.0.1:3260")
    with pytest.raises(cdlab.LabError) as exc:
        ssh.wait_for_ssh([vm], 0)
    assert asked == ["storage"]
    assert str(exc.value).endswith("storage's kernel log, last lines:\n  [x] iSCSI Login timeout on Network "
                                   "Portal 10.77.0.1:3260\ndevice: last SSH attempt: ssh hung for 30 s")


def test_a_hung_ssh_login_is_a_failed_attempt_not_a_crash(monkeypatch):
    from cdlab import ssh

    def hang(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], 30)
    monkeypatch.setattr(ssh.subprocess, "run", hang)
    assert ssh.ssh_probe(conf(name="d", index=0, ssh_port=40000, storage_ip="10.77.0.11")) == "ssh hung for 30 s"


def test_a_variant_has_its_own_key_and_leaves_the_lab_image_alone(recipe):
    base = cdlab.recipe_hash(recipe)
    os.makedirs(os.path.join(recipe, "variants"))
    with open(os.path.join(recipe, "variants", "extra.txt"), "w") as f:
        f.write("zfs-dkms\n")
    assert cdlab.recipe_hash(recipe) == base
