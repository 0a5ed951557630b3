# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The dracut module's shell library, run by the shells an initramfs has.

The boot records come from the storage API's own shell-form encoder, so the
two sides cannot drift apart. Hostile records must be refused without running
any of their content. (The lab's device_boot scenario runs the module for real.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.path.join(REPO, 'roles', 'dracut_overlay', 'files', '90clusterducks-vdisk', 'vdisk-lib.sh')
sys.path.insert(0, os.path.join(REPO, 'roles', 'storage_api', 'files'))

from vdisk_api.app import boot_shell  # noqa: E402  pylint: disable=wrong-import-position

SHELLS = [s for s in ('dash', 'bash') if shutil.which(s)]

RECORD = {
    'api_version': 1, 'device': 'node01', 'vdisk': 'node01',
    'initiator_iqn': 'iqn.2024-01.org.clusterducks.device:node01',
    'target_iqn': 'iqn.2026-11.io.clusterducks.lab:node01', 'tpg': 1,
    'portals': ['10.77.0.11:3260', '[fd00::10]:3260'], 'lun': 0,
    'wwn': 'a8366d85-ba18-4b6c-8b6a-d4997c1e2f00', 'write_protect': False,
    'chap': {'userid': 'node01', 'password': "it's $(touch /tmp/pwned) `id` \\ \"q\""},
    'chap_mutual': None,
    'overlayfs': {'enabled': True, 'lower': '/', 'upper': '/data/overlayfs', 'work': '/data/workdir'},
    'mounts': {'0': 'data'}, 'frozen': True, 'revision': 3,
}

SHOW = ['VDISK_TARGET_IQN', 'VDISK_TPG', 'VDISK_PORTALS', 'VDISK_LUN', 'VDISK_WWN', 'VDISK_CHAP_USER',
        'VDISK_CHAP_PASS', 'VDISK_CHAP_MUTUAL_USER', 'VDISK_MOUNTS', 'VDISK_OVERLAY_UPPER', 'VDISK_OVERLAY_WORK']


def run(shell, script, *args, env=None):
    """Source the library in SHELL (with dracut's getarg stubbed) and run SCRIPT."""
    prelude = 'getarg() { return 1; }\n. "%s"\n' % LIB
    return subprocess.run([shell, '-c', prelude + script, 'test', *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), check=False)


def parse(shell, tmp_path, text, device='node01'):
    path = tmp_path / 'record.sh'
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    script = ('VDISK_DEVICE_ID=%s\nvdisk_parse_record "$1" || exit 3\n' % device
              + ''.join('printf "%%s\\0" "$%s"\n' % k for k in SHOW))
    return run(shell, script, str(path))


def record(**changes):
    data = dict(RECORD)
    data.update(changes)
    return boot_shell(data).decode()


@pytest.fixture(autouse=True)
def no_pwned():
    marker = '/tmp/pwned'
    if os.path.exists(marker):
        os.unlink(marker)
    yield
    assert not os.path.exists(marker), 'a boot record value was executed'


@pytest.mark.parametrize('shell', SHELLS)
def test_api_record_parses_to_the_exact_values(shell, tmp_path):
    out = parse(shell, tmp_path, record())
    assert out.returncode == 0, out.stdout + out.stderr
    values = dict(zip(SHOW, out.stdout.split('\0')))
    assert values == {
        'VDISK_TARGET_IQN': RECORD['target_iqn'], 'VDISK_TPG': '1',
        'VDISK_PORTALS': '10.77.0.11:3260 [fd00::10]:3260', 'VDISK_LUN': '0', 'VDISK_WWN': RECORD['wwn'],
        'VDISK_CHAP_USER': 'node01', 'VDISK_CHAP_PASS': RECORD['chap']['password'], 'VDISK_CHAP_MUTUAL_USER': '',
        'VDISK_MOUNTS': '0:data', 'VDISK_OVERLAY_UPPER': '/data/overlayfs', 'VDISK_OVERLAY_WORK': '/data/workdir'}


@pytest.mark.parametrize('shell', SHELLS)
@pytest.mark.parametrize('secret', ["'", "''", "a'", "'a", "a'b'c", "'\\''", 'x' * 255])
def test_quotes_anywhere_in_a_secret(shell, tmp_path, secret):
    out = parse(shell, tmp_path, record(chap={'userid': 'u', 'password': secret}))
    assert out.returncode == 0, out.stdout
    assert out.stdout.split('\0')[SHOW.index('VDISK_CHAP_PASS')] == secret


BAD_RECORDS = {
    'command after the value': ("VDISK_NAME='x'; touch /tmp/pwned\n", 'not single-quoted'),
    'stray quote': ("VDISK_NAME='a'b'\n", 'stray quote'),
    'unquoted': ('VDISK_NAME=$(touch /tmp/pwned)\n', 'not single-quoted'),
    'bad key': ("PATH='/tmp'\n", "not KEY='value'"),
    'key with a space': ("VDISK_A B='x'\n", "not KEY='value'"),
    'no equals sign': ('VDISK_NAME\n', "not KEY='value'"),
    'empty': ('', 'empty'),
}


@pytest.mark.parametrize('shell', SHELLS)
@pytest.mark.parametrize('case', sorted(BAD_RECORDS))
def test_malformed_lines_are_refused_unrun(shell, tmp_path, case):
    text, message = BAD_RECORDS[case]
    out = parse(shell, tmp_path, record() + text if text else '')
    assert out.returncode == 3
    assert message in out.stdout


BAD_VALUES = {
    'other device': ({'device': 'node02'}, "for device 'node02'"),
    'api version': ({'api_version': 2}, 'version'),
    'target iqn with a space': ({'target_iqn': 'iqn.2026-11.io.x:a b'}, 'target IQN'),
    'target iqn month 13 letters': ({'target_iqn': 'iqn.20x6-11.io.x:a'}, 'target IQN'),
    'initiator iqn': ({'initiator_iqn': 'node01'}, 'initiator IQN'),
    'portal with a command': ({'portals': ['10.0.0.1:3260;reboot']}, 'portal'),
    'portal without port': ({'portals': ['10.0.0.1']}, 'portal'),
    'no portal': ({'portals': []}, 'no portal'),
    'lun': ({'lun': 'x'}, 'LUN'),
    'tpg zero': ({'tpg': 0}, 'TPG'),
    'wwn too short': ({'wwn': 'abc'}, 'WWN'),
    'mount traversal': ({'mounts': {'0': '../etc'}}, 'mount'),
    'mount absolute': ({'mounts': {'0': '/data'}}, 'mount'),
    'mount dot': ({'mounts': {'0': 'data/./x'}}, 'mount'),
    'mount twice': ({'mounts': {'1': 'data', '2': 'data'}}, 'twice'),
    'no mounts': ({'mounts': {}}, 'no mounts'),
    'upper outside the vDisk': ({'overlayfs': {'enabled': True, 'lower': '/', 'upper': '/var/up',
                                               'work': '/data/w'}}, 'not below a vDisk mount'),
    'upper traversal': ({'overlayfs': {'enabled': True, 'lower': '/', 'upper': '/data/../etc',
                                       'work': '/data/w'}}, 'VDISK_OVERLAY_UPPER'),
    'work inside upper': ({'overlayfs': {'enabled': True, 'lower': '/', 'upper': '/data/u',
                                         'work': '/data/u/w'}}, 'work is inside upper'),
    'lower not the image': ({'overlayfs': {'enabled': True, 'lower': '/data', 'upper': '/data/u',
                                           'work': '/data/w'}}, 'lower'),
    'upper and work on two filesystems': ({'mounts': {'1': 'data', '2': 'data/b'},
                                           'overlayfs': {'enabled': True, 'lower': '/', 'upper': '/data/u',
                                                         'work': '/data/b/w'}}, 'different vDisk filesystems'),
    'chap control character': ({'chap': {'userid': 'u', 'password': 'a\x07b'}}, 'control characters'),
    'chap user without password': ({'chap': {'userid': 'u', 'password': ''}}, 'without a password'),
}


@pytest.mark.parametrize('shell', SHELLS)
@pytest.mark.parametrize('case', sorted(BAD_VALUES))
def test_values_breaking_the_rules_are_refused(shell, tmp_path, case):
    changes, message = BAD_VALUES[case]
    out = parse(shell, tmp_path, record(**changes))
    assert out.returncode == 3, out.stdout
    assert message in out.stdout


@pytest.mark.parametrize('shell', SHELLS)
def test_a_newer_apis_keys_are_ignored_and_missing_keys_refused(shell, tmp_path):
    assert parse(shell, tmp_path, record() + "VDISK_SOMETHING_NEW='1'\n").returncode == 0
    without_wwn = ''.join(line + '\n' for line in record().splitlines() if not line.startswith('VDISK_WWN='))
    out = parse(shell, tmp_path, without_wwn)
    assert out.returncode == 3 and 'no VDISK_WWN' in out.stdout


@pytest.mark.parametrize('shell', SHELLS)
def test_the_last_line_needs_no_newline(shell, tmp_path):
    assert parse(shell, tmp_path, record().rstrip('\n')).returncode == 0


def naa_link(serial):
    """The kernel's spc_gen_naa_6h_vendor_specific: 6, company id 001405, then
    the serial's hex digits (others skipped) up to 16 bytes in all."""
    digits = [c for c in serial.lower() if c in '0123456789abcdef'][:25]
    return '/dev/disk/by-id/wwn-0x6001405' + ''.join(digits)


@pytest.mark.parametrize('shell', SHELLS)
@pytest.mark.parametrize('serial', [str(uuid.UUID(int=0xA8366D85BA184B6C8B6AD4997C1E2F00)), str(uuid.uuid4()),
                                    'ABCDEF01-2345-6789-abcd-ef0123456789'])
def test_disk_link_is_the_kernels_naa_name(shell, serial):
    out = run(shell, 'vdisk_naa_link "$1"', serial)
    assert out.stdout.strip() == naa_link(serial)
    assert len(out.stdout.strip().rsplit('0x', 1)[1]) == 32


def test_naa_link_matches_a_name_seen_in_the_lab():
    # From the device_boot scenario: LIO serial -> udev's by-id link.
    assert naa_link('a8366d85-ba18-4b6c-8b6a-d4997c1e2f00') == '/dev/disk/by-id/wwn-0x6001405a8366d85ba184b6c8b6ad4997'


def smbios_raw(strings, handle=0x0a0b):
    """An SMBIOS type 11 structure as /sys/firmware/dmi/entries/11-0/raw has it."""
    body = b''.join(s.encode() + b'\0' for s in strings) + b'\0'
    return bytes([11, 5, handle & 0xff, handle >> 8, len(strings)]) + body


@pytest.mark.parametrize('shell', SHELLS)
def test_smbios_oem_strings(shell, tmp_path):
    entries = tmp_path / 'entries'
    (entries / '11-0').mkdir(parents=True)
    (entries / '11-1').mkdir()
    # A handle byte of 0x0a is a newline: the header must not leak into the strings.
    (entries / '11-0' / 'raw').write_bytes(smbios_raw(['io.systemd.credential:x=y', 'io.clusterducks.vdisk.device=node07']))
    (entries / '11-1' / 'raw').write_bytes(smbios_raw(['io.clusterducks.vdisk.token=cdv1.abc.def\n']))
    out = run(shell, 'echo "$(vdisk_smbios_value device) $(vdisk_smbios_value token)"',
              env={'VDISK_DMI_ENTRIES': str(entries)})
    assert out.stdout.split() == ['node07', 'cdv1.abc.def']


@pytest.mark.parametrize('shell', SHELLS)
@pytest.mark.parametrize('settings, problem', [
    ({}, None),
    ({'VDISK_ONFAIL': 'reboot'}, 'rd.vdisk.onfail'),
    ({'VDISK_UNASSIGNED': 'maybe'}, 'rd.vdisk.unassigned'),
    ({'VDISK_TIMEOUT': '2'}, 'rd.vdisk.timeout'),
    ({'VDISK_TIMEOUT': '1e3'}, 'rd.vdisk.timeout'),
    ({'VDISK_REPLACEMENT_TIMEOUT': '-1'}, 'replacement_timeout'),
    ({'VDISK_API_URLS': ''}, 'no storage API URL'),
    ({'VDISK_API_URLS': 'http://10.0.0.1:8443'}, 'is not https'),
    ({'VDISK_API_URLS': 'https://10.0.0.1:8443/;reboot'}, 'is not https'),
    ({'VDISK_API_URLS': 'https://[fd00::1]:8443 https://s2:8443'}, None),
    ({'VDISK_TOKEN_SOURCE': 'env'}, 'rd.vdisk.token'),
])
def test_settings_are_checked(shell, settings, problem):
    base = {'VDISK_ONFAIL': 'halt', 'VDISK_UNASSIGNED': 'halt', 'VDISK_TIMEOUT': '300',
            'VDISK_REPLACEMENT_TIMEOUT': '600', 'VDISK_API_URLS': 'https://10.77.0.11:8443',
            'VDISK_TOKEN_SOURCE': 'auto'}
    base.update(settings)
    script = ''.join("%s='%s'\n" % kv for kv in base.items()) + 'vdisk_check_config'
    out = run(shell, script)
    if problem is None:
        assert out.returncode == 0, out.stdout
    else:
        assert out.returncode == 1 and problem in out.stdout
