# clusterducks.vdisk: the two commands (on a fresh Debian 12 machine, as root)
#   make demo   set up, build the lab, boot the demo
#   make test   set up and run every test: unit, sanity, lint, lab scenarios
# Inner loops: make test-unit | make sanity | make lint | make scenario S=default

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
PY        := $(VENV)/bin/python
BIN       := $(VENV)/bin
CDLAB     := python3 lab/cdlab
S         ?= lio_smoke

# Molecule installs the collection under test into $ANSIBLE_HOME/collections and
# ansible-lint reads ./.ansible: keep both in the checkout, never in ~/.ansible
# where a stale copy would shadow the code under test.
export ANSIBLE_HOME := $(CURDIR)/.ansible
export NO_COLOR := 1

# Debian packages the controller needs (the lab VMs get theirs from lab/image/).
# nginx-light: tests/api run the API behind the role's nginx front (the binary
# only: an nginx.service this installs is stopped and disabled again).
APT_PACKAGES := qemu-system-x86 qemu-utils mmdebstrap e2fsprogs python3-venv \
                openssh-client shellcheck git ca-certificates nginx-light

.PHONY: help setup deps venv image demo demo-down test test-unit sanity lint \
        test-collection test-lab scenario collection clean

help:
	@sed -n 's/^#   //p;s/^# Inner loops: /inner loops: /p' Makefile

setup: deps venv

deps: .deps.stamp
.deps.stamp: Makefile
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "setup: installing Debian packages:" $$missing; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	    case " $$missing " in *" nginx-light "*) systemctl disable --now nginx.service 2>/dev/null || true;; esac; \
	fi
	@touch $@

venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements-dev.txt constraints-dev.txt | deps
	/usr/bin/python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints-dev.txt
	@touch $@

image: deps
	$(CDLAB) image

# The whole story on the lab: storage host + API, golden image, a device that
# boots it with its vDisk overlay, changes itself, reboots and keeps it all.
demo: setup
	lab/demo/demo.sh

demo-down:
	$(CDLAB) --lab demo destroy
	rm -rf .lab/demo-secrets

test: setup
	tests/run-suite.sh

test-unit: venv
	$(BIN)/pytest -q

sanity: venv
	tests/ansible-test.sh sanity

lint: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ansible-lint
	shellcheck lab/*.sh lab/image/*.sh lab/demo/*.sh tests/*.sh benchmarks/*/*.sh roles/*/files/*.sh .ci/run
	shellcheck -x -P roles/dracut_overlay/files/90clusterducks-vdisk roles/dracut_overlay/files/90clusterducks-vdisk/*.sh

test-collection: venv
	tests/collection-build.sh

test-lab: setup
	tests/run-suite.sh lab

# One lab scenario, the inner loop for lab work: make scenario S=default
scenario: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/molecule test -s $(S)

clean:
	-$(CDLAB) --lab demo destroy
	rm -rf build .lab *.tar.gz
