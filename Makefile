# lvs-lab: the two README commands are `make up` and `make test`. Every target is idempotent and cached.
SHELL := /bin/bash
NETNS ?= lvslab
STACK ?= dev
PY := .lvslab/venv/bin/python
# Where the lab's bridge is: inside $(NETNS) with lvs-lab's private libvirtd, on this host with a managed one.
IN_NS := tools/host.sh exec $(NETNS) -- env

.PHONY: up test setup gitfilter packages venv toolchain image host-start host-stop destroy shell ssh exec capture pause resume reap unit e2e lint bench verify status preview change docs

## up: set up everything on a fresh machine, then create and verify the $(STACK) lab
up: setup host-start
	@source tools/env.sh && $(IN_NS) PATH="$$PATH" $(PY) tools/lvslab.py up --stack $(STACK)

## test: the whole test suite (unit tests, then the e2e runs on real VMs); .ci/run calls this
test: setup
	@source tools/env.sh && tools/run-tests.sh

setup: packages venv toolchain image gitfilter

# .gitattributes' filter: git leaves out the encryptionsalt line the plain pulumi CLI adds to a stack file
gitfilter:
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
		git config filter.lvslab-salt.clean "sed '/^encryptionsalt: /d'" && git config filter.lvslab-salt.smudge cat; fi

packages:
	@tools/host.sh packages

venv:
	@tools/venv.sh

toolchain:
	@tools/toolchain.sh

image: venv
	@$(PY) -m lvslab.imagebuild >/dev/null

host-start:
	@tools/host.sh start $(NETNS)

host-stop:
	@tools/host.sh stop $(NETNS)

## destroy: tear the $(STACK) lab down (and check nothing is left)
destroy:
	@source tools/env.sh && $(IN_NS) PATH="$$PATH" $(PY) tools/lvslab.py destroy --stack $(STACK)

## shell: a shell in the lab's network namespace (curl the VIP from here)
shell:
	@source tools/env.sh && $(IN_NS) PATH="$$PATH" bash

## reap: destroy the fleet's labs whose runner stopped beating (PULUMI_BACKEND_URL=postgres://...; OLDER_THAN=10m; DRY_RUN=1 lists)
reap:
	@source tools/env.sh && $(IN_NS) PATH="$$PATH" $(PY) tools/lvslab.py reap --older-than $(or $(OLDER_THAN),10m) \
		$(if $(DRY_RUN),--dry-run)

## ssh: a root shell on NODE of the $(STACK) lab (CMD="..." runs that instead); also: ssh -F .lvslab/ssh/$(STACK)/config NODE
ssh:
	@source tools/env.sh && $(IN_NS) PATH="$$PATH" $(PY) tools/lvslab.py ssh --stack $(STACK) $(NODE) $(if $(CMD),-- $(CMD))

## exec: CMD on every node of the $(STACK) lab at once (NODES=a,b or ROLE=directors|real-servers), output per node
exec:
	@source tools/env.sh && $(IN_NS) PATH="$$PATH" $(PY) tools/lvslab.py exec --stack $(STACK) \
		$(if $(NODES),--nodes $(NODES)) $(if $(ROLE),--role $(ROLE)) -- "$(CMD)"

## capture: tcpdump on the $(STACK) lab's bridge (or NODE=…), FILTER=vrrp|arp|http|lvs|all|'expr' (default lvs), SECONDS=…
capture:
	@source tools/env.sh && $(IN_NS) PATH="$$PATH" $(PY) tools/lvslab.py capture --stack $(STACK) \
		$(if $(NODE),--node $(NODE)) $(if $(FILTER),--filter "$(FILTER)") $(if $(SECONDS),--seconds $(SECONDS))

## pause / resume: save every node of the $(STACK) lab (libvirt managed save) / bring it back in seconds
pause resume:
	@source tools/env.sh && $(IN_NS) PATH="$$PATH" $(PY) tools/lvslab.py $@ --stack $(STACK)

unit: setup
	@source tools/env.sh && $(PY) -m pytest -q tests/unit

## bench: time the ephemeral cycle and measure memory (BENCH_ARGS=--cold also times cold builds)
bench: setup host-start
	@source tools/env.sh && $(PY) tools/bench.py --netns $(NETNS) $(BENCH_ARGS)

lint: venv
	@.lvslab/venv/bin/ruff check .

## docs: regenerate README's configuration table and Pulumi.yaml's config block (lvslab/config/schema.py) and its assertion table
docs: venv
	@$(PY) -m lvslab.config.docs --write
	@$(PY) -m lvslab.assertion_docs --write

## verify: re-run the verification against the running $(STACK) lab (changes nothing; exit status = result; STEPS=a,b: only those)
verify:
	@source tools/env.sh && $(IN_NS) PATH="$$PATH" $(PY) tools/lvslab.py verify --stack $(STACK) $(if $(STEPS),--steps $(STEPS))

## status: each node of the $(STACK) lab (state, address, role, VRRP state, services) and the IPVS table
status:
	@source tools/env.sh && $(IN_NS) PATH="$$PATH" $(PY) tools/lvslab.py status --stack $(STACK)

## preview: what an up of the edited $(STACK) stack file would change; says whether a director would be rebuilt
preview:
	@source tools/env.sh && $(IN_NS) PATH="$$PATH" $(PY) tools/lvslab.py preview --stack $(STACK)

## change: apply the edited $(STACK) stack file to the running lab, the VIP polled meanwhile (failed requests counted)
change:
	@source tools/env.sh && $(IN_NS) PATH="$$PATH" $(PY) tools/lvslab.py up --stack $(STACK) --watch
