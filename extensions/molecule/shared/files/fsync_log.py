"""fsync'd records for power-cut tests: write them, then check every acknowledged one.

  fsync_log.py write FILE ACKS [--count N] [--rate R]
      Writes 4 KiB records to FILE one after the other: magic, sequence number,
      SHA-256 of a random payload, the payload. After each, fdatasync(FILE);
      only then the sequence number and the time it returned (wall clock, then
      monotonic) go to ACKS (a file on another disk, fsync'd too): a record in
      ACKS is one the storage promised to keep, from that time on.
      Runs until killed (or N records); --rate: at most R records a second
      (a steady load that leaves the VMs time for other tests). FILE grows, so every fdatasync also
      persists the file's size: the filesystem's log is in the test too.
  fsync_log.py check FILE ACKS [--from SEQ]
      Every record up to the last acknowledged one must be intact. Prints JSON
      {"acked", "intact", "first_bad", "extra", "outages", "longest_gap_s",
      "bad_outside_outages"}
      and exits 1 if one is not. "outages" are the gaps of more than OUTAGE_S
      seconds between two acknowledgements from record SEQ on (a power-cut of
      the storage: the writer waits for it), each with the record acknowledged
      right after it: that record's fdatasync spanned the cut, so its data
      write may have completed before the cut and its flush been answered by
      the restarted target (docs/data-path.md, "Open"). "bad_outside_outages"
      counts the damaged records that are not such a record: records
      acknowledged before a cut, or written after it.
  fsync_log.py prefix FILE
      How many records from the start are intact, with no gap (the log a
      crash-consistent snapshot holds). Prints JSON {"records", "size"}.

Standard library only: it runs on a lab initiator.
"""

import hashlib
import json
import os
import struct
import sys
import time

BLOCK = 4096
MAGIC = b"CDFSYNC1"
HEADER = struct.Struct(">8sQ32s")  # magic, sequence number, sha256(payload)
PAYLOAD = BLOCK - HEADER.size


def write(path, acks, count=None, rate=None):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    ack_fd = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    seq = os.fstat(fd).st_size // BLOCK  # carry on after a previous run
    end = None if count is None else seq + count
    next_at = time.monotonic()
    while end is None or seq < end:
        if rate:
            next_at += 1.0 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        payload = os.urandom(PAYLOAD)
        os.pwrite(fd, HEADER.pack(MAGIC, seq, hashlib.sha256(payload).digest()) + payload, seq * BLOCK)
        os.fdatasync(fd)
        # The wall time for snapshot checks; the monotonic one tells outages (a clock step cannot hide one).
        os.write(ack_fd, b"%d %.6f %.6f\n" % (seq, time.time(), time.monotonic()))
        os.fsync(ack_fd)
        seq += 1


OUTAGE_S = 10.0


def outages(acks, since=0):
    """[(seconds, seq)]: each gap of more than OUTAGE_S between two acknowledgements from record ``since`` on,
    with the record acknowledged right after it."""
    found = []
    for (_seq, before), (seq, after) in zip(acks, acks[1:]):
        if seq > since and before is not None and after is not None and after - before > OUTAGE_S:
            found.append((round(after - before, 1), seq))
    return found


def read_acks(path):
    """[(seq, time or None)] of the acknowledgement file: the monotonic time where it has one, else the wall time."""
    acks = []
    with open(path, "rb") as f:
        for line in f.read().split(b"\n"):
            fields = line.split()
            if fields and fields[0].isdigit():
                acks.append((int(fields[0]), float(fields[-1]) if len(fields) > 1 else None))
    return acks


def longest_gap(acks, since=0):
    """The longest pause between two acknowledgements from record ``since`` on, in seconds (a report)."""
    gaps = [after - before for (_seq, before), (seq, after) in zip(acks, acks[1:])
            if seq > since and before is not None and after is not None]
    return round(max(gaps), 1) if gaps else None


def check(path, acks, since=0):
    ack_list = read_acks(acks)
    acked = ack_list[-1][0] if ack_list else -1
    gaps = outages(ack_list, since)
    spanning = set(seq for _seconds, seq in gaps)
    good, first_bad, bad_outside = 0, None, 0
    with open(path, "rb") as f:
        data = f.read()
    for seq in range(acked + 1):
        if intact_at(data, seq):
            good += 1
            continue
        if first_bad is None:
            first_bad = seq
        if seq not in spanning:
            bad_outside += 1
    result = {"acked": acked + 1, "intact": good, "first_bad": first_bad,
              "extra": max(0, len(data) // BLOCK - (acked + 1)),
              "outages": [{"seconds": s, "spanning_record": seq, "intact": intact_at(data, seq)} for s, seq in gaps],
              "longest_gap_s": longest_gap(ack_list, since),
              "bad_outside_outages": bad_outside}
    print(json.dumps(result))
    return 0 if first_bad is None else 1


def intact_at(data, seq):
    return intact(data[seq * BLOCK:(seq + 1) * BLOCK], seq)


def intact(record, seq):
    if len(record) != BLOCK:
        return False
    magic, number, digest = HEADER.unpack(record[:HEADER.size])
    return magic == MAGIC and number == seq and hashlib.sha256(record[HEADER.size:]).digest() == digest


def prefix(path):
    with open(path, "rb") as f:
        data = f.read()
    seq = 0
    while intact(data[seq * BLOCK:(seq + 1) * BLOCK], seq):
        seq += 1
    print(json.dumps({"records": seq, "size": len(data)}))
    return 0


def main(argv):
    if len(argv) == 2 and argv[0] == "prefix":
        return prefix(argv[1])
    if len(argv) >= 3 and argv[0] == "write":
        count = int(argv[argv.index("--count") + 1]) if "--count" in argv else None
        rate = float(argv[argv.index("--rate") + 1]) if "--rate" in argv else None
        write(argv[1], argv[2], count, rate)
        return 0
    if len(argv) in (3, 5) and argv[0] == "check" and (len(argv) == 3 or argv[3] == "--from"):
        return check(argv[1], argv[2], int(argv[4]) if len(argv) == 5 else 0)
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
