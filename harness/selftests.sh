#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the KVM selftests of the work tree, statically, against its headers.
set -euo pipefail
SCRIPT_NAME=selftests
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0

Runs 'make headers' into KBUILD_DIR ($KBUILD_DIR/usr/include), then builds
tools/testing/selftests/kvm of $TREE_DIR with -static into SELFTEST_DIR
($SELFTEST_DIR).  Incremental.  Log: LOG_DIR/selftests.log.
USAGE
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local start
	start=$(date +%s)
	ensure_dirs
	mkdir -p "$SELFTEST_DIR"
	: >"$LOG_DIR/selftests.log"
	run_logged "$LOG_DIR/selftests.log" make -C "$TREE_DIR" O="$KBUILD_DIR" ARCH=x86_64 headers ||
		die "$EXIT_SELFTESTS" "make headers failed"
	run_logged "$LOG_DIR/selftests.log" make -C "$TREE_DIR/tools/testing/selftests/kvm" \
		-j"$JOBS" OUTPUT="$SELFTEST_DIR" EXTRA_CFLAGS=-static \
		KHDR_INCLUDES="-isystem $KBUILD_DIR/usr/include" ||
		die "$EXIT_SELFTESTS" "building the KVM selftests failed (see $LOG_DIR/selftests.log)"
	stage_time selftests "$start"
}

main "$@"
