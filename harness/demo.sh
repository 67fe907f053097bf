#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The main job: boot the patched kernel and show what the TSC state test sees.
set -euo pipefail
SCRIPT_NAME=demo
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0

Applies patches/, builds, boots the kernel under QEMU and runs the TSC
state selftest (x86_64/tsc_state_test), printing its whole output: each
case of KVM_GET_TSC_STATE / KVM_SET_TSC_STATE with the skews and errors it
measured.  Logs: LOG_DIR/demo.*.
USAGE
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	ensure_dirs
	"$HARNESS_DIR/deps.sh"
	"$HARNESS_DIR/tree.sh" apply
	"$HARNESS_DIR/kernel.sh"
	"$HARNESS_DIR/selftests.sh"
	local set=$BUILD_DIR/demo.list status=0
	if [ -x "$SELFTEST_DIR/x86_64/tsc_state_test" ]; then
		echo "x86_64/tsc_state_test" >"$set"
	else
		log "the series has no x86_64/tsc_state_test yet: showing the base's TSC tests"
		grep -v '^#' "$HARNESS_DIR/sets/tsc.list" >"$set"
	fi
	"$HARNESS_DIR/boot.sh" "$set" demo >"$LOG_DIR/demo.out" || status=$?
	echo "==== guest output ($LOG_DIR/demo.ktap.log)"
	sed -n '/^TAP version/,$p' "$LOG_DIR/demo.ktap.log"
	echo "==== summary"
	cat "$LOG_DIR/demo.out"
	return "$status"
}

main "$@"
