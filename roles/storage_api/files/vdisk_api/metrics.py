# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Prometheus metrics shared by all worker processes.

A scrape lands on any one worker (SO_REUSEPORT), so counters live in an
anonymous shared mapping created before the fork. Each worker owns one slot
and is its only writer, so no locks are needed; a scrape sums the slots.
"""

from __future__ import annotations

import mmap

ROUTES = ('healthz', 'metrics', 'assignments', 'assignment', 'tokens', 'token', 'vdisks', 'vdisk', 'boot', 'other')
STATUSES = (200, 201, 204, 400, 401, 403, 404, 405, 409, 411, 413, 415, 422, 431, 500, 503)
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_R = len(ROUTES)
_S = len(STATUSES) + 1  # + 'other'
_B = len(BUCKETS) + 1  # + '+Inf'
_OFF_COUNT = 0
_OFF_HIST = _OFF_COUNT + _R * _S
_OFF_SUM = _OFF_HIST + _R * _B  # microseconds
_OFF_DBW = _OFF_SUM + _R
_OFF_CONN = _OFF_DBW + 1  # connections accepted (TLS handshake done)
_OFF_HSERR = _OFF_CONN + 1  # connections that failed before or during the TLS handshake
_SLOT = _OFF_HSERR + 1

_ROUTE_INDEX = dict((r, i) for i, r in enumerate(ROUTES))
_STATUS_INDEX = dict((s, i) for i, s in enumerate(STATUSES))


class Metrics:
    def __init__(self, workers):
        self.workers = workers
        self._map = mmap.mmap(-1, 8 * _SLOT * workers)  # MAP_SHARED|MAP_ANONYMOUS
        self._all = memoryview(self._map).cast('Q')
        self.slot = self._all[0:_SLOT]

    def use_slot(self, index):
        self.slot = self._all[index * _SLOT:(index + 1) * _SLOT]

    def observe(self, route, status, seconds):
        slot = self.slot
        r = _ROUTE_INDEX.get(route, _R - 1)
        slot[_OFF_COUNT + r * _S + _STATUS_INDEX.get(status, _S - 1)] += 1
        b = 0
        for bound in BUCKETS:
            if seconds <= bound:
                break
            b += 1
        slot[_OFF_HIST + r * _B + b] += 1
        slot[_OFF_SUM + r] += int(seconds * 1e6)

    def db_write(self, count=1):
        self.slot[_OFF_DBW] += count

    def connection(self):
        self.slot[_OFF_CONN] += 1

    def handshake_error(self):
        self.slot[_OFF_HSERR] += 1

    def _sum(self, offset):
        return sum(self._all[w * _SLOT + offset] for w in range(self.workers))

    def render(self, extra=None):
        out = ['# HELP vdisk_api_requests_total Requests answered, by route and HTTP status.',
               '# TYPE vdisk_api_requests_total counter']
        for r, route in enumerate(ROUTES):
            for s in range(_S):
                value = self._sum(_OFF_COUNT + r * _S + s)
                if value:
                    status = str(STATUSES[s]) if s < len(STATUSES) else 'other'
                    out.append('vdisk_api_requests_total{route="%s",status="%s"} %d' % (route, status, value))
        out += ['# HELP vdisk_api_request_duration_seconds Time from a complete request to its answer.',
                '# TYPE vdisk_api_request_duration_seconds histogram']
        for r, route in enumerate(ROUTES):
            counts = [self._sum(_OFF_HIST + r * _B + b) for b in range(_B)]
            total = sum(counts)
            if not total:
                continue
            running = 0
            for b, bound in enumerate(BUCKETS):
                running += counts[b]
                out.append('vdisk_api_request_duration_seconds_bucket{route="%s",le="%g"} %d' % (route, bound, running))
            out.append('vdisk_api_request_duration_seconds_bucket{route="%s",le="+Inf"} %d' % (route, total))
            out.append('vdisk_api_request_duration_seconds_sum{route="%s"} %.6f'
                       % (route, self._sum(_OFF_SUM + r) / 1e6))
            out.append('vdisk_api_request_duration_seconds_count{route="%s"} %d' % (route, total))
        out += ['# HELP vdisk_api_db_writes_total Committed (fsync\'d) database write transactions.',
                '# TYPE vdisk_api_db_writes_total counter',
                'vdisk_api_db_writes_total %d' % self._sum(_OFF_DBW),
                '# HELP vdisk_api_connections_total TLS connections accepted.',
                '# TYPE vdisk_api_connections_total counter',
                'vdisk_api_connections_total %d' % self._sum(_OFF_CONN),
                '# HELP vdisk_api_handshake_errors_total Connections that failed during the TLS handshake.',
                '# TYPE vdisk_api_handshake_errors_total counter',
                'vdisk_api_handshake_errors_total %d' % self._sum(_OFF_HSERR)]
        for name, help_text, value in extra or ():
            out += ['# HELP %s %s' % (name, help_text), '# TYPE %s gauge' % name, '%s %s' % (name, value)]
        return '\n'.join(out) + '\n'
