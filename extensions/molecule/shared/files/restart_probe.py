"""Writes a storage host can take back when it dies: unflushed writes, then a flush it answers after a restart.

  restart_probe.py DEVICE OFFSET STOPFILE

Writes 4 KiB blocks (O_DIRECT, no flush) to DEVICE, one every 20 ms, each
into its own 64 KiB chunk from byte OFFSET on (a thin pool's chunk: every
write maps a new one). Once STOPFILE exists (the storage host is down) and 10
more writes have completed (it is back), it flushes the device once (fsync:
a SYNCHRONIZE CACHE the restarted target answers) and reads every completed
block back. Prints JSON:
  written_before_cut   writes completed before the longest pause (the cut)
  outage_s             that pause
  flush_after_restart  "ok", or the error
  lost                 completed writes whose block did not come back
  lost_span_s          how far apart in time the first and last lost ones were
A storage host that never completes a write before it is durable loses none.
Standard library only: it runs on a lab initiator.
"""

import json
import mmap
import os
import sys
import time

BLOCK = 4096
STRIDE = 65536


def tag(k):
    return b"PROBE%08d" % k


def main(dev, base, stop):
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    buf, back = mmap.mmap(-1, BLOCK), mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT needs
    done, after, k, t0 = [], 0, 0, time.monotonic()
    while after < 10:
        buf.seek(0)
        buf.write(tag(k) * (BLOCK // len(tag(k))) + b"\0" * (BLOCK % len(tag(k))))
        os.pwritev(fd, [buf], base + k * STRIDE)
        done.append((k, time.monotonic() - t0))
        after += os.path.exists(stop)
        k += 1
        time.sleep(0.02)
    try:
        os.fsync(fd)
        flushed = "ok"
    except OSError as e:
        flushed = "failed: %s" % e
    lost = []
    for k, t in done:
        os.preadv(fd, [back], base + k * STRIDE)
        if back[:len(tag(k))] != tag(k):
            lost.append(t)
    cut = max(range(1, len(done)), key=lambda i: done[i][1] - done[i - 1][1])
    print(json.dumps({"written_before_cut": cut, "outage_s": round(done[cut][1] - done[cut - 1][1], 1),
                      "flush_after_restart": flushed, "lost": len(lost),
                      "lost_span_s": round(max(lost) - min(lost), 2) if lost else 0}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
