"""The power-cut tests' record writer and checker (extensions/molecule/shared/files/fsync_log.py)."""

import importlib.util
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "..", "..", "extensions", "molecule", "shared", "files", "fsync_log.py")
spec = importlib.util.spec_from_file_location("fsync_log", PATH)
fsync_log = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fsync_log)


def run_check(tmp_path, capsys):
    rc = fsync_log.check(str(tmp_path / "log"), str(tmp_path / "acks"))
    return rc, json.loads(capsys.readouterr().out)


def test_every_acknowledged_record_is_checked(tmp_path, capsys):
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=20)
    assert run_check(tmp_path, capsys) == (0, {"acked": 20, "intact": 20, "first_bad": None, "extra": 0})
    # A second run carries on after the first.
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=5)
    assert run_check(tmp_path, capsys)[1]["acked"] == 25


def test_a_damaged_or_missing_record_fails(tmp_path, capsys):
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=10)
    with open(tmp_path / "log", "r+b") as f:
        f.seek(4 * fsync_log.BLOCK + 200)
        f.write(b"\0")
    rc, result = run_check(tmp_path, capsys)
    assert (rc, result["first_bad"], result["intact"]) == (1, 4, 9)
    os.truncate(tmp_path / "log", 3 * fsync_log.BLOCK)  # acknowledged, then lost
    rc, result = run_check(tmp_path, capsys)
    assert (rc, result["first_bad"], result["intact"]) == (1, 3, 3)


def test_records_written_but_not_acknowledged_do_not_count(tmp_path, capsys):
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=3)
    with open(tmp_path / "acks", "w") as f:
        f.write("0\n1\n")  # the power went before the third ack
    assert run_check(tmp_path, capsys) == (0, {"acked": 2, "intact": 2, "first_bad": None, "extra": 1})


def test_rate_limits_records_a_second(tmp_path, capsys):
    import time
    started = time.monotonic()
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=6, rate=20)
    assert time.monotonic() - started >= 0.29  # six records, one each 50 ms
    assert run_check(tmp_path, capsys)[1]["intact"] == 6
