# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A small in-memory stand-in for the parts of rtslib-fb that module_utils.lio uses.

Shapes follow rtslib-fb 2.1.75 (Debian 12): same property names, same
exceptions, Target(..., mode='lookup') raising RTSLibNotInCFS when absent.
"""

from __future__ import annotations

import types

CHAP_SECRETS = ('s3cr3t-initiator-pass', 's3cr3t-mutual-pass', 'tpg-s3cr3t-pass')
CHAP_USERIDS = ('node01-user', 'storage-mutual-user', 'tpg-user')


class RTSLibError(Exception):
    pass


class RTSLibNotInCFS(RTSLibError):
    pass


class FakeSO:
    def __init__(self, name, plugin, wwn, size=None, udev_path='', write_back=None, aio=None,
                 status='activated', attributes=None):
        self.name = name
        self._attributes = dict(attributes or {})
        self.plugin = plugin
        self.wwn = wwn
        self.udev_path = udev_path
        self.status = status
        if size is not None:
            self.size = size
        if write_back is not None:
            self.write_back = write_back
        if aio is not None:
            self.aio = aio

    def list_attributes(self, writable=None, readable=None):
        return list(self._attributes)

    def get_attribute(self, name):
        return self._attributes[name]


class FakeBrokenSizeSO(FakeSO):
    """fileio object whose backing file vanished: rtslib raises on .size."""

    @property
    def size(self):
        raise RTSLibError('backing file gone')


class FakeLUN:
    def __init__(self, lun, storage_object):
        self.lun = lun
        self.storage_object = storage_object


class FakeMappedLUN:
    def __init__(self, mapped_lun, tpg_lun, write_protect=False):
        self.mapped_lun = mapped_lun
        self.tpg_lun = tpg_lun
        self.write_protect = write_protect


class FakeNodeACL:
    def __init__(self, node_wwn, mapped_luns=(), chap_userid='', chap_password='',
                 chap_mutual_userid='', chap_mutual_password=''):
        self.node_wwn = node_wwn
        self.mapped_luns = list(mapped_luns)
        self.chap_userid = chap_userid
        self.chap_password = chap_password
        self.chap_mutual_userid = chap_mutual_userid
        self.chap_mutual_password = chap_mutual_password


class FakePortal:
    def __init__(self, ip_address, port=3260):
        self.ip_address = ip_address
        self.port = port


class FakeTPG:
    def __init__(self, tag, enable=True, portals=(), luns=(), node_acls=(), attributes=None,
                 parameters=None, chap_userid=None, chap_password=None):
        self.tag = tag
        self.enable = enable
        self.network_portals = list(portals)
        self.luns = list(luns)
        self.node_acls = list(node_acls)
        self.chap_userid = chap_userid
        self.chap_password = chap_password
        self.chap_mutual_userid = None
        self.chap_mutual_password = None
        self._attributes = dict(attributes or {})
        self._parameters = dict(parameters or {})

    def list_attributes(self, writable=None, readable=None):
        return list(self._attributes)

    def get_attribute(self, name):
        return self._attributes[name]

    def list_parameters(self, writable=None, readable=None):
        return list(self._parameters)

    def get_parameter(self, name):
        return self._parameters[name]


class FakeFabric:
    def __init__(self, name, exists=True):
        self.name = name
        self.exists = exists
        self.targets = []


class FakeTarget:
    def __init__(self, fabric_module, wwn, tpgs=()):
        self.fabric_module = fabric_module
        self.wwn = wwn
        self.tpgs = list(tpgs)


class FakeRoot:
    default_save_file = '/etc/rtslib-fb-target/saveconfig.json'

    def __init__(self, fabrics, storage_objects):
        self._fabrics = fabrics
        self._storage_objects = storage_objects
        self.walked = []  # names of listing properties that were walked

    @property
    def fabric_modules(self):
        return list(self._fabrics.values())

    @property
    def targets(self):
        self.walked.append('targets')
        return [t for fm in self._fabrics.values() for t in fm.targets]

    @property
    def storage_objects(self):
        self.walked.append('storage_objects')
        return list(self._storage_objects)


def build_world():
    """Return (fake rtslib module, root) describing one vDisk host."""
    fileio = FakeSO('node01', 'fileio', '0c7bdb5e-1d27-4e1c-9c0a-8e5d2f5b1a11', size=10737418240,
                    udev_path='/srv/vdisks/node01.img', write_back=False, aio=True)
    block = FakeSO('node02', 'block', '5a1f2e3d-0000-4000-8000-000000000002', size=2147483648,
                   udev_path='/dev/vg0/node02', write_back=False,
                   attributes={'emulate_write_cache': '1', 'queue_depth': '128', 'emulate_tpu': '1'})
    unused = FakeSO('spare', 'ramdisk', '77777777-0000-4000-8000-000000000007', udev_path='')
    gone = FakeBrokenSizeSO('orphan', 'fileio', '99999999-0000-4000-8000-000000000009',
                            udev_path='/srv/vdisks/orphan.img', write_back=False, aio=False,
                            status='deactivated')

    iscsi = FakeFabric('iscsi')
    loop = FakeFabric('loopback', exists=False)
    fabrics = {'iscsi': iscsi, 'loopback': loop}

    lun0 = FakeLUN(0, fileio)
    acl = FakeNodeACL('iqn.2005-03.org.open-iscsi:node01',
                      mapped_luns=[FakeMappedLUN(0, lun0, write_protect=False)],
                      chap_userid=CHAP_USERIDS[0], chap_password=CHAP_SECRETS[0],
                      chap_mutual_userid=CHAP_USERIDS[1], chap_mutual_password=CHAP_SECRETS[1])
    tpg1 = FakeTPG(1, portals=[FakePortal('0.0.0.0', 3260)], luns=[lun0], node_acls=[acl],
                   attributes={'authentication': '1', 'generate_node_acls': '0',
                               'password_hint_from_buggy_kernel': CHAP_SECRETS[2]},
                   parameters={'HeaderDigest': 'CRC32C,None', 'MaxConnections': '1'},
                   chap_userid=CHAP_USERIDS[2], chap_password=CHAP_SECRETS[2])
    t1 = FakeTarget(iscsi, 'iqn.2003-01.org.linux-iscsi.storage1:vdisk-node01', [tpg1])

    lun1 = FakeLUN(0, block)
    acl2 = FakeNodeACL('iqn.2005-03.org.open-iscsi:node02',
                       mapped_luns=[FakeMappedLUN(0, lun1, write_protect=True)])
    tpg2 = FakeTPG(1, enable=False, portals=[FakePortal('192.0.2.10', 3261)], luns=[lun1],
                   node_acls=[acl2])
    t2 = FakeTarget(iscsi, 'iqn.2003-01.org.linux-iscsi.storage1:vdisk-node02', [tpg2])
    iscsi.targets = [t2, t1]  # deliberately unsorted

    root = FakeRoot(fabrics, [unused, block, gone, fileio])

    lookups = []

    def fabric_module(name):
        return fabrics[name]

    def target(fabric_module_obj, wwn, mode='any'):
        lookups.append((fabric_module_obj.name, wwn, mode))
        if mode != 'lookup':
            raise AssertionError('gather must never create targets (mode=%r)' % mode)
        if not fabric_module_obj.exists:
            raise AssertionError('lookup on an unloaded fabric would modprobe it')
        if not wwn.startswith('iqn.'):
            raise RTSLibError('Invalid WWN')
        for t in fabric_module_obj.targets:
            if t.wwn == wwn:
                return t
        raise RTSLibNotInCFS('No such Target in configfs: %s' % wwn)

    class RTSRoot:
        _preferred_dbroot = '/nonexistent/rtslib-fb-target'

        def __new__(cls):
            return root

    fake = types.SimpleNamespace(
        RTSLibError=RTSLibError,
        RTSLibNotInCFS=RTSLibNotInCFS,
        FabricModule=fabric_module,
        Target=target,
        RTSRoot=RTSRoot,
        lookups=lookups,
    )
    fake_root_module = types.SimpleNamespace(default_save_file='/etc/rtslib-fb-target/saveconfig.json')
    return fake, fake_root_module, root
