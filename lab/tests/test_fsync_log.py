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
    result = json.loads(capsys.readouterr().out)
    result.pop("longest_gap_s")  # a real pause between real writes: checked on its own below
    return rc, result


def damage(tmp_path, seq, offset=100):
    # Flipped, not zeroed: the payload is random, so a zero written over a zero (1 in 256) damaged nothing.
    with open(tmp_path / "log", "r+b") as f:
        f.seek(seq * fsync_log.BLOCK + offset)
        byte = f.read(1)[0]
        f.seek(seq * fsync_log.BLOCK + offset)
        f.write(bytes([byte ^ 0xFF]))


def test_every_acknowledged_record_is_checked(tmp_path, capsys):
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=20)
    assert run_check(tmp_path, capsys) == (0, {"acked": 20, "intact": 20, "first_bad": None, "extra": 0,
                                               "outages": [], "bad_outside_outages": 0})
    # A second run carries on after the first.
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=5)
    assert run_check(tmp_path, capsys)[1]["acked"] == 25


def test_a_damaged_or_missing_record_fails(tmp_path, capsys):
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=10)
    damage(tmp_path, 4, offset=200)
    rc, result = run_check(tmp_path, capsys)
    assert (rc, result["first_bad"], result["intact"]) == (1, 4, 9)
    os.truncate(tmp_path / "log", 3 * fsync_log.BLOCK)  # acknowledged, then lost
    rc, result = run_check(tmp_path, capsys)
    assert (rc, result["first_bad"], result["intact"]) == (1, 3, 3)


def test_records_written_but_not_acknowledged_do_not_count(tmp_path, capsys):
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=3)
    with open(tmp_path / "acks", "w") as f:
        f.write("0\n1\n")  # the power went before the third ack
    assert run_check(tmp_path, capsys) == (0, {"acked": 2, "intact": 2, "first_bad": None, "extra": 1,
                                               "outages": [], "bad_outside_outages": 0})


def test_rate_limits_records_a_second(tmp_path, capsys):
    import time
    started = time.monotonic()
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=6, rate=20)
    assert time.monotonic() - started >= 0.29  # six records, one each 50 ms
    assert run_check(tmp_path, capsys)[1]["intact"] == 6


def write_acks(tmp_path, times):
    with open(tmp_path / "acks", "w") as f:
        f.writelines("%d %.6f\n" % (seq, t) for seq, t in enumerate(times))


def test_the_record_spanning_an_outage_is_told_apart(tmp_path, capsys):
    # Records 0-4 acknowledged 0.1 s apart, then the storage was away 45 s:
    # record 5's fdatasync spanned the cut.
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=8)
    write_acks(tmp_path, [100.0, 100.1, 100.2, 100.3, 100.4, 145.4, 145.5, 145.6])
    damage(tmp_path, 5)
    rc, result = run_check(tmp_path, capsys)
    assert rc == 1 and result["first_bad"] == 5
    assert result["outages"] == [{"seconds": 45.0, "spanning_record": 5, "intact": False}]
    assert result["bad_outside_outages"] == 0


def test_a_record_acknowledged_before_the_cut_counts_in_full(tmp_path, capsys):
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=8)
    write_acks(tmp_path, [100.0, 100.1, 100.2, 100.3, 100.4, 145.4, 145.5, 145.6])
    damage(tmp_path, 4)  # acknowledged before the cut: the storage promised it
    damage(tmp_path, 6)  # written after the cut
    rc, result = run_check(tmp_path, capsys)
    assert (rc, result["bad_outside_outages"]) == (1, 2)
    assert result["outages"] == [{"seconds": 45.0, "spanning_record": 5, "intact": True}]


def test_gaps_before_from_are_not_outages(tmp_path, capsys):
    # A writer stopped after record 2 and started again 30 s later (a new cut),
    # then a 45 s outage: only the second gap is this cut's.
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=7)
    write_acks(tmp_path, [100.0, 100.1, 100.2, 130.2, 130.3, 175.3, 175.4])
    rc = fsync_log.check(str(tmp_path / "log"), str(tmp_path / "acks"), since=3)
    result = json.loads(capsys.readouterr().out)
    assert rc == 0 and result["outages"] == [{"seconds": 45.0, "spanning_record": 5, "intact": True}]
    assert fsync_log.main(["check", str(tmp_path / "log"), str(tmp_path / "acks")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [o["spanning_record"] for o in result["outages"]] == [3, 5] and result["longest_gap_s"] == 45.0


def test_outages_go_by_the_monotonic_time_a_clock_step_cannot_hide(tmp_path, capsys):
    # The wall clock was stepped back 40 s during a 45 s outage; the monotonic time was not.
    fsync_log.write(str(tmp_path / "log"), str(tmp_path / "acks"), count=4)
    with open(tmp_path / "acks", "w") as f:
        f.write("0 1000.0 50.0\n1 1000.1 50.1\n2 1005.1 95.1\n3 1005.2 95.2\n")
    rc = fsync_log.check(str(tmp_path / "log"), str(tmp_path / "acks"))
    result = json.loads(capsys.readouterr().out)
    assert rc == 0 and result["outages"] == [{"seconds": 45.0, "spanning_record": 2, "intact": True}]
