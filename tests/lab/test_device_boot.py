# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a booted vDisk device must show, asked through Ansible modules.

Runs against the lab inventory that lab/cdlab writes, with pytest-ansible's
ansible_adhoc fixture; --ansible-host-pattern picks the devices.
"""

from __future__ import annotations

import base64

import pytest


@pytest.fixture
def devices(ansible_adhoc, request):
    hosts = ansible_adhoc()[request.config.getoption('ansible_host_pattern')]
    assert len(hosts) >= 1, 'no device matches the host pattern'
    return hosts


def each(results):
    """{host: result} with every host's module call checked."""
    out = {}
    for host, result in results.items():
        assert not result.get('failed'), '%s: %s' % (host, result.get('msg') or result.get('stderr'))
        out[host] = result
    return out


def test_root_is_the_vdisk_overlay(devices):
    for host, mount in each(devices.command('findmnt -rno FSTYPE,OPTIONS /')).items():
        fstype, options = mount['stdout'].split(' ', 1)
        assert fstype == 'overlay', host
        opts = options.split(',')
        assert 'lowerdir=/run/clusterducks/lower' in opts, host
        assert 'redirect_dir=nofollow' in opts, host
        assert not {'index=on', 'metacopy=on', 'xino=on'} & set(opts), host


def test_vdisk_attached_and_secrets_gone(devices):
    for host, status in each(devices.slurp(src='/run/clusterducks/vdisk.status')).items():
        assert base64.b64decode(status['content']).decode().startswith('state=attached\n'), host
    for host, secret_dir in each(devices.stat(path='/run/clusterducks/secret')).items():
        assert not secret_dir['stat']['exists'], host


def test_image_root_is_read_only_and_has_no_host_keys(devices):
    for host, mount in each(devices.command('findmnt -rno OPTIONS /run/clusterducks/lower')).items():
        assert mount['stdout'].split(',')[0] == 'ro', host
    for host, found in each(devices.find(paths='/run/clusterducks/lower/etc/ssh', patterns='ssh_host_*')).items():
        assert found['matched'] == 0, host


def test_no_failed_unit(devices):
    for host, failed in each(devices.command('systemctl --failed --no-legend --plain')).items():
        assert failed['stdout'] == '', '%s: %s' % (host, failed['stdout'])


def test_storage_nic_is_kept(devices):
    for host, network in each(devices.slurp(src='/run/systemd/network/10-clusterducks-vdisk.network')).items():
        assert 'KeepConfiguration=yes' in base64.b64decode(network['content']).decode(), host
