"""The restart probe's writer (extensions/molecule/shared/files/restart_probe.py) on a plain file."""

import importlib.util
import json
import os
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "..", "..", "extensions", "molecule", "shared", "files", "restart_probe.py")
spec = importlib.util.spec_from_file_location("restart_probe", PATH)
restart_probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(restart_probe)


@pytest.fixture
def device():
    # O_DIRECT needs a real filesystem (tmpfs refuses it).
    directory = tempfile.mkdtemp(dir="/var/tmp")
    path = os.path.join(directory, "lun")
    with open(path, "wb") as f:
        f.truncate(32 << 20)
    yield path
    os.unlink(path)
    os.rmdir(directory)


def test_a_storage_that_keeps_every_write_loses_none(device, capsys):
    stop = device + ".stop"
    open(stop, "w").close()  # "down" from the start: 10 writes, the flush, the read-back
    assert restart_probe.main(device, 65536, stop) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["lost"] == 0 and result["flush_after_restart"] == "ok"
    with open(device, "rb") as f:
        f.seek(65536 + 9 * 65536)
        assert f.read(13) == b"PROBE00000009"
    os.unlink(stop)


def test_blocks_that_did_not_come_back_are_counted(device, capsys, monkeypatch):
    stop = device + ".stop"
    open(stop, "w").close()
    real = os.preadv

    def storage_lost_two(fd, buffers, offset):
        if offset // 65536 in (3, 7):  # as a restarted target that lost two new chunks would read
            buffers[0][:] = b"\0" * 4096
            return 4096
        return real(fd, buffers, offset)
    monkeypatch.setattr(restart_probe.os, "preadv", storage_lost_two)
    restart_probe.main(device, 0, stop)
    assert json.loads(capsys.readouterr().out)["lost"] == 2
    os.unlink(stop)
