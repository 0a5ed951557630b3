#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: lio_info
short_description: Read the running LIO (Linux SCSI target) configuration
version_added: 0.1.0
description:
  - Reads the running LIO configuration from configfs through rtslib-fb and returns it as plain data.
  - Reports backstores (storage objects), targets with their TPGs, portals, LUNs, node ACLs and mapped LUNs,
    the loaded fabric modules and the path of the save file restored at boot.
  - Never returns secrets. For CHAP only whether it is configured is reported, not the user names or passwords.
author:
  - clusterducks maintainers (!UNKNOWN)
extends_documentation_fragment:
  - clusterducks.vdisk.attributes
  - clusterducks.vdisk.attributes.info_module
  - clusterducks.vdisk.attributes.platform
  - clusterducks.vdisk.attributes.idempotent
  - clusterducks.vdisk.attributes.idempotent_not_modify_state
options:
  targets:
    description:
      - IQNs of iSCSI targets to report.
      - These targets are looked up directly instead of walking the whole configuration, which is much faster on
        hosts with many targets. Targets that do not exist are listed in RV(lio.missing_targets).
      - When set, RV(lio.storage_objects) only contains the storage objects used by LUNs of these targets.
      - When omitted, all targets of all fabrics and all storage objects are reported.
    type: list
    elements: str
requirements:
  - python3-rtslib-fb (Python module C(rtslib_fb) or C(rtslib))
  - configfs mounted at C(/sys/kernel/config) and the C(target_core_mod) kernel module
notes:
  - Opening LIO may mount configfs, load C(target_core_mod) and create the rtslib-fb database directory
    (C(/etc/rtslib-fb-target) on Debian, C(/etc/target) upstream) if it is missing, as rtslib-fb requires it.
    Fabric kernel modules are not loaded by this module.
  - Requires root privileges on the target host.
seealso:
  - name: rtslib-fb
    description: The Python library used to access LIO.
    link: https://github.com/open-iscsi/rtslib-fb
"""

EXAMPLES = r"""
- name: Read the whole LIO configuration
  clusterducks.vdisk.lio_info:
  register: result

- name: Show the storage objects
  ansible.builtin.debug:
    msg: "{{ result.lio.storage_objects | map(attribute='name') | list }}"

- name: Read one target only
  clusterducks.vdisk.lio_info:
    targets:
      - iqn.2003-01.org.linux-iscsi.storage1:vdisk-node01
  register: result

- name: Fail if the target does not exist
  ansible.builtin.assert:
    that:
      - result.lio.missing_targets | length == 0
"""

RETURN = r"""
lio:
  description: The running LIO configuration.
  returned: success
  type: dict
  contains:
    fabric_modules:
      description: Names of the fabric modules that are loaded (present in configfs).
      returned: success
      type: list
      elements: str
      sample: [iscsi]
    save_file:
      description:
        - Path of the rtslib-fb save file that is restored at boot.
        - C(/etc/rtslib-fb-target/saveconfig.json) on Debian, C(/etc/target/saveconfig.json) upstream.
      returned: success
      type: str
      sample: /etc/rtslib-fb-target/saveconfig.json
    missing_targets:
      description: IQNs given in O(targets) that do not exist. Empty when O(targets) is not set.
      returned: success
      type: list
      elements: str
      sample: []
    storage_objects:
      description: Storage objects (backstores), sorted by plugin and name.
      returned: success
      type: list
      elements: dict
      contains:
        name:
          description: Name of the storage object.
          type: str
          returned: success
          sample: node01
        plugin:
          description: Backstore plugin.
          type: str
          returned: success
          sample: fileio
        wwn:
          description: T10 unit serial. The initiator sees it as the disk's C(wwn-*) / C(scsi-*) identity.
          type: str
          returned: success
          sample: 0c7bdb5e-1d27-4e1c-9c0a-8e5d2f5b1a11
        size:
          description: Size in bytes, V(null) if the plugin does not report it.
          type: int
          returned: success
          sample: 10737418240
        udev_path:
          description: Backing file or device, V(null) if not set.
          type: str
          returned: success
          sample: /srv/vdisks/node01.img
        write_back:
          description: Whether the write cache is enabled (C(fileio), C(block)); V(null) for other plugins.
          type: bool
          returned: success
          sample: false
        aio:
          description: Whether asynchronous I/O is enabled (C(fileio)); V(null) for other plugins.
          type: bool
          returned: success
          sample: true
        status:
          description: Storage object status.
          type: str
          returned: success
          sample: activated
        attributes:
          description:
            - The storage object's readable LIO attributes, as strings - among them the I/O settings the initiator
              sees (C(emulate_write_cache), C(queue_depth), C(hw_max_sectors), C(block_size), C(emulate_tpu) for
              UNMAP, C(emulate_3pc) for XCOPY, C(emulate_fua_write)).
            - Empty if the kernel does not list them.
          type: dict
          returned: success
          sample: {emulate_write_cache: '0', queue_depth: '128', hw_max_sectors: '16384', emulate_tpu: '1'}
    targets:
      description: Targets, sorted by fabric and WWN.
      returned: success
      type: list
      elements: dict
      contains:
        wwn:
          description: Target WWN (IQN for iSCSI).
          type: str
          returned: success
          sample: iqn.2003-01.org.linux-iscsi.storage1:vdisk-node01
        fabric:
          description: Fabric module name.
          type: str
          returned: success
          sample: iscsi
        tpgs:
          description: Target portal groups, sorted by tag.
          type: list
          elements: dict
          returned: success
          contains:
            tag:
              description: TPG tag.
              type: int
              returned: success
              sample: 1
            enable:
              description: Whether the TPG is enabled.
              type: bool
              returned: success
              sample: true
            portals:
              description: Network portals as dicts with keys C(ip) and C(port).
              type: list
              elements: dict
              returned: success
              sample: [{ip: 0.0.0.0, port: 3260}]
            luns:
              description: LUNs as dicts with keys C(lun) and C(storage_object) (a dict with C(name) and C(plugin)).
              type: list
              elements: dict
              returned: success
              sample: [{lun: 0, storage_object: {name: node01, plugin: fileio}}]
            node_acls:
              description:
                - Node ACLs with keys C(node_wwn), C(mapped_luns) (dicts with C(mapped_lun), C(tpg_lun), C(write_protect)),
                  C(chap) and C(chap_mutual).
                - C(chap) and C(chap_mutual) only tell whether CHAP credentials are set.
              type: list
              elements: dict
              returned: success
              sample:
                - node_wwn: iqn.2005-03.org.open-iscsi:node01
                  mapped_luns: [{mapped_lun: 0, tpg_lun: 0, write_protect: false}]
                  chap: true
                  chap_mutual: false
            chap:
              description: Whether TPG-wide CHAP credentials are set (used with generated node ACLs).
              type: bool
              returned: success
              sample: false
            chap_mutual:
              description: Whether TPG-wide mutual CHAP credentials are set.
              type: bool
              returned: success
              sample: false
            attributes:
              description: TPG attributes as configfs reports them (string values).
              type: dict
              returned: success
              sample: {authentication: '1', generate_node_acls: '0', demo_mode_write_protect: '1'}
            parameters:
              description: TPG (RFC 3720) parameters as configfs reports them.
              type: dict
              returned: success
              sample: {HeaderDigest: 'CRC32C,None', MaxConnections: '1'}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio


def main():
    module = AnsibleModule(
        argument_spec={
            'targets': {'type': 'list', 'elements': 'str'},
        },
        supports_check_mode=True,
    )

    lio.require_rtslib(module)

    rtslib_error = lio.rtslib_errors()[0]
    try:
        root = lio.open_root()
        result = lio.gather(root, targets=module.params['targets'])
    except lio.LIOError as exc:
        module.fail_json(msg=str(exc))
    except (rtslib_error, OSError) as exc:
        # configfs changed underneath us (e.g. an object deleted mid-read).
        module.fail_json(msg='reading LIO configuration failed: %s' % exc)

    module.exit_json(changed=False, lio=result)


if __name__ == '__main__':
    main()
