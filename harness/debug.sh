#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make check-debug: the TSC tests and the fuzz/concurrency tests on a
# debug kernel; any WARNING, BUG, KASAN, UBSAN, lockdep or
# sleep-in-atomic report fails the run.
set -euo pipefail
SCRIPT_NAME=debug
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0

Builds the kernel with harness/config/kvm-test.config and
harness/config/debug.config into BUILD_DIR/kbuild-debug, boots it and runs
harness/sets/debug.list, then parses the console log for debug reports
(harness/ktap.py --splats).  Not part of make check: the debug kernel
takes longer to build and runs slower under emulation.
USAGE
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local start status=0
	start=$(date +%s)
	export KBUILD_DIR=$BUILD_DIR/kbuild-debug
	export SELFTEST_DIR=$BUILD_DIR/selftests-debug
	local fragments
	mapfile -t fragments < <(kvm_test_fragments)
	build_series "${fragments[@]}" "$HARNESS_DIR/config/debug.config"
	QEMU_TIMEOUT=${QEMU_TIMEOUT:-5400} KTAP_FLAGS=--splats \
		"$HARNESS_DIR/boot.sh" "$HARNESS_DIR/sets/debug.list" debug || status=$?
	log "check-debug took $(($(date +%s) - start)) s"
	return "$status"
}

main "$@"
