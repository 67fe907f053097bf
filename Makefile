# SPDX-License-Identifier: GPL-2.0
# Precise guest TSC migration for KVM x86: the kernel series in
# patches/linux, the QEMU series in patches/qemu (backport: patches/qemu-7.2), and the harness that
# builds, boots and tests them.  `make help` lists targets.

BUILD_DIR ?= $(CURDIR)/build
export BUILD_DIR
H := $(CURDIR)/harness

.PHONY: help check check-debug check-tree demo bench regress baseline deps tree export rebase newer-base \
	kernel selftests test-parser test-fetch gates test-gates mutants loop fuzz-loop clean qemu e2e e2e-loop e2e-base e2e-2host e2e-2host-loop demo-vmm

help:
	@echo "make check       the test command: packages, parser tests, apply both series, build kernel,"
	@echo "                 QEMU and selftests, boot: TSC selftests, e2e migrations, gates, summary"
	@echo "make demo        the main job: live-migrate a Debian guest with Debian's QEMU and the patched one, tables"
	@echo "make demo-vmm    the reference VMM: migrate a 4-vCPU guest's TSC three ways, table of results"
	@echo "make bench       sweep vCPUs, downtime, stagger, clock steps: CSV and PNG plots"
	@echo "make regress     whole x86 KVM selftest suite against harness/baseline/"
	@echo "make baseline    re-measure that baseline on the unpatched base"
	@echo "make check-debug TSC, fuzz and concurrency tests on a KASAN/UBSAN/lockdep kernel"
	@echo "make check-tree  like check, but test the work tree as it is (no git am, no gates)"
	@echo "make mutants     plant each bug of harness/mutants/ and check the selftests catch it"
	@echo "make loop        run the TSC selftests LOOP_COUNT (50) times in one boot: flake counts"
	@echo "make fuzz-loop   the fuzzer's concurrency cases FUZZ_COUNT (300) times on the debug kernel: hangs"
	@echo "make gates       the series' quality gates (apply, bisect, checkpatch, sparse, ...)"
	@echo "make test-gates  check that each gate fails on a deliberately broken input"
	@echo "make tree        apply patches/linux and patches/qemu to their bases in $(BUILD_DIR)/{linux,qemu}"
	@echo "make export      write the work trees' commits back to patches/linux and patches/qemu"
	@echo "make qemu        build the patched QEMU 10.2 (static, KVM only) in $(BUILD_DIR)/qemu-build"
	@echo "make e2e         live-migrate a Debian guest with stock and patched QEMU inside the test VM"
	@echo "make e2e-loop    make e2e LOOP_COUNT (20) times: flake counts"
	@echo "make e2e-base    make e2e on the unpatched base kernel: the QEMU series' vcpu.rst recipe"
	@echo "make e2e-2host   live-migrate a Debian guest over TCP between two test VMs (own KVM, TSC, clock)"
	@echo "make e2e-2host-loop  make e2e-2host LOOP_COUNT (10) times"
	@echo "make newer-base  does Debian serve newer bases than the pins, and do the series apply and build there?"
	@echo "make rebase      move harness/base.conf's pins to the newest versions Debian serves, re-apply both series"
	@echo "make kernel | selftests | test-parser | test-fetch | deps | clean"

check:
	$(H)/check.sh

check-debug:
	$(H)/debug.sh

check-tree:
	NO_APPLY=1 NO_GATES=1 $(H)/check.sh

gates:
	$(H)/gates.sh

test-gates:
	$(H)/tests/test_gates.sh

mutants:
	$(H)/mutants.sh

loop:
	$(H)/loop.sh

fuzz-loop:
	$(H)/fuzzloop.sh

demo:
	$(H)/e2e.sh demo

demo-vmm:
	$(H)/demo.sh

bench:
	$(H)/bench.sh

regress:
	$(H)/regress.sh run

baseline:
	$(H)/regress.sh record

deps:
	$(H)/deps.sh

rebase:
	$(H)/rebase.sh

newer-base:
	$(H)/newer.sh

tree: deps
	$(H)/tree.sh apply
	$(H)/tree.sh qemu apply

export:
	$(H)/tree.sh export
	$(H)/tree.sh qemu export

qemu:
	$(H)/qemu.sh

e2e:
	$(H)/e2e.sh

e2e-loop:
	$(H)/e2e.sh loop

e2e-base:
	$(H)/e2e.sh base

e2e-2host:
	$(H)/e2e.sh 2host

e2e-2host-loop:
	$(H)/e2e.sh 2host-loop

kernel:
	$(H)/kernel.sh

selftests:
	$(H)/selftests.sh

test-parser:
	$(H)/tests/test_ktap.sh

test-fetch:
	$(H)/tests/test_fetch.sh

clean:
	rm -rf $(BUILD_DIR)/kbuild $(BUILD_DIR)/selftests $(BUILD_DIR)/initramfs \
		$(BUILD_DIR)/guest $(BUILD_DIR)/logs
