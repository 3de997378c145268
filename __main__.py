"""lvs-lab: an LVS-DR + keepalived lab on libvirt VMs, built and verified by `pulumi up`."""

from lvslab.program import main

main()
