"""fsync'd records for power-cut tests: write them, then check every acknowledged one.

  fsync_log.py write FILE ACKS [--count N] [--rate R]
      Writes 4 KiB records to FILE one after the other: magic, sequence number,
      SHA-256 of a random payload, the payload. After each, fdatasync(FILE);
      only then the sequence number and the time it returned go to ACKS (a
      file on another disk, fsync'd too): a record in ACKS is one the storage
      promised to keep, from that time on.
      Runs until killed (or N records); --rate: at most R records a second
      (a steady load that leaves the VMs time for other tests). FILE grows, so every fdatasync also
      persists the file's size: the filesystem's log is in the test too.
  fsync_log.py check FILE ACKS
      Every record up to the last acknowledged one must be intact. Prints JSON
      {"acked", "intact", "first_bad", "extra"} and exits 1 if one is not.
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
        os.write(ack_fd, b"%d %.6f\n" % (seq, time.time()))
        os.fsync(ack_fd)
        seq += 1


def check(path, acks):
    with open(acks, "rb") as f:
        lines = [line.split()[0] for line in f.read().split(b"\n") if line.strip()[:1].isdigit()]
    acked = int(lines[-1]) if lines else -1
    intact, first_bad = 0, None
    with open(path, "rb") as f:
        data = f.read()
    for seq in range(acked + 1):
        record = data[seq * BLOCK:(seq + 1) * BLOCK]
        ok = len(record) == BLOCK
        if ok:
            magic, number, digest = HEADER.unpack(record[:HEADER.size])
            ok = magic == MAGIC and number == seq and hashlib.sha256(record[HEADER.size:]).digest() == digest
        if ok:
            intact += 1
        elif first_bad is None:
            first_bad = seq
    result = {"acked": acked + 1, "intact": intact, "first_bad": first_bad,
              "extra": max(0, len(data) // BLOCK - (acked + 1))}
    print(json.dumps(result))
    return 0 if first_bad is None else 1


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
    if len(argv) == 3 and argv[0] == "check":
        return check(argv[1], argv[2])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
