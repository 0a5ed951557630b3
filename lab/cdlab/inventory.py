"""The Ansible inventory of a lab's running VMs."""

import json
import os

from .ssh import SSH_OPTS


def inventory(lab):
    """An Ansible YAML inventory (as a dict) of the lab's running VMs."""
    hosts = {}
    for vm in lab.vms():
        if not vm.running:
            continue
        d = vm.describe()
        hosts[vm.name] = {
            "ansible_host": d["ssh_host"],
            "ansible_port": d["ssh_port"],
            "ansible_user": d["ssh_user"],
            "ansible_ssh_private_key_file": d["ssh_key"],
            "ansible_ssh_common_args": " ".join(SSH_OPTS[:6]),
            "ansible_python_interpreter": "/usr/bin/python3",
            "cdlab_storage_ip": d["storage_ip"],
            "cdlab_disks": d["disks"],
            "cdlab_forwards": d["forwards"],
        }
    return {"all": {"children": {"cdlab_%s" % lab.name.replace("-", "_"): {"hosts": hosts}}}}


def dump_yaml(data, indent=0):
    """Enough YAML for an inventory (JSON is valid YAML for scalars and lists)."""
    lines = []
    pad = "  " * indent
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append("%s%s:" % (pad, key))
            lines.extend(dump_yaml(value, indent + 1) if value else [pad + "  {}"])
        else:
            lines.append("%s%s: %s" % (pad, key, json.dumps(value)))
    return lines


def write_inventory(lab, path=None):
    path = path or os.path.join(lab.path, "inventory.yml")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("# Written by lab/cdlab for lab %r: the running VMs.\n" % lab.name)
        f.write("\n".join(dump_yaml(inventory(lab))) + "\n")
    return path
