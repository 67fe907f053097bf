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
	local normal_kbuild=$KBUILD_DIR normal_selftests=$SELFTEST_DIR
	export KBUILD_DIR=$BUILD_DIR/kbuild-debug
	export SELFTEST_DIR=$BUILD_DIR/selftests-debug
	local fragments
	mapfile -t fragments < <(kvm_test_fragments)
	"$HARNESS_DIR/deps.sh"
	"$HARNESS_DIR/tree.sh" apply
	"$HARNESS_DIR/kernel.sh" "${fragments[@]}" "$HARNESS_DIR/config/debug.config"
	# The selftests depend on the tree and its uAPI headers, not on the
	# kernel's config: when make check's kernel build has the same
	# headers, its selftests (brought up to date with the tree) serve.
	run_logged "$LOG_DIR/selftests.log" make -C "$TREE_DIR" O="$KBUILD_DIR" ARCH=x86_64 headers ||
		die "$EXIT_SELFTESTS" "make headers failed"
	if [ -d "$normal_selftests" ] && [ -d "$normal_kbuild/usr/include" ] &&
		KBUILD_DIR=$normal_kbuild "$HARNESS_DIR/selftests.sh" &&
		diff -rq "$normal_kbuild/usr/include" "$KBUILD_DIR/usr/include" >/dev/null; then
		log "selftests: the same uAPI headers as $normal_kbuild: $normal_selftests serves"
		export SELFTEST_DIR=$normal_selftests
	else
		"$HARNESS_DIR/selftests.sh"
	fi
	QEMU_TIMEOUT=${QEMU_TIMEOUT:-5400} KTAP_FLAGS=--splats \
		"$HARNESS_DIR/boot.sh" "$HARNESS_DIR/sets/debug.list" debug || status=$?
	log "check-debug took $(($(date +%s) - start)) s"
	return "$status"
}

main "$@"
