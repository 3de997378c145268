"""The VIP on a node: where it lives and how to tell who holds it. One definition for the checks (Python, on
`ip -4 -o addr show dev eth0`), the status report and the faults (the same test in shell)."""

from __future__ import annotations

VIP_PREFIXLEN = 32  # a director holds the VIP as a host address (keepalived's virtual_ipaddress, IPaddr2)
VIP_DEVICE = "eth0"
ADDRESSES_COMMAND = f"ip -4 -o addr show dev {VIP_DEVICE}"
# Shell with a `{vip}` placeholder (str.format): exits 0 on a node that holds the VIP.
HOLDS_VIP_TEST = ADDRESSES_COMMAND + " | grep -q ' {vip}/'"
# Shell with a `{vip}` placeholder: removes a VIP left behind (keepalived killed with -9).
DROP_VIP = f"ip addr del {{vip}}/{VIP_PREFIXLEN} dev {VIP_DEVICE}"


def holds_vip(addresses: str, vip: str) -> bool:
    """Does this output of ADDRESSES_COMMAND show the VIP? (the same test as HOLDS_VIP_TEST)"""
    return f" {vip}/" in addresses
