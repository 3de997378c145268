"""The verification: what a lab must do, checked on the running lab. Standard library only (it is zipped and
run by a bare python3 on a remote hypervisor; tests/unit/test_layers.py holds it to that).

failure.py   CheckFailed: the one way a check fails (check id, expected, observed)
evaluate.py  pure evaluation of what was observed against what the config implies
ipvsadm.py   parsers of ipvsadm's output, and the director-side table watcher
probe.py     the client side: SSH, HTTP, ARP, the VIP poller, nftables on the bridge
live.py      questions to a running lab shared by the steps (who holds the VIP, the IPVS table, ...)
steps/       the steps, by family: state, balance, health, failover
registry.py  step names -> functions, which steps a lab runs, run_step
run.py       run a step where the lab's bridge is (here, or relayed to a remote hypervisor)
__main__.py  `python -m lvslab.verify STEP` (spec on stdin, JSON result on stdout)
"""
