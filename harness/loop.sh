#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make loop: run the TSC selftests many times in a row in one boot and
# count the failures of each: flaky is failing.
set -euo pipefail
SCRIPT_NAME=loop
. "$(dirname "$0")/lib.sh"

LOOP_COUNT=${LOOP_COUNT:-50}

usage() {
	cat <<USAGE
usage: $0 [SET_FILE]

Boots the kernel already built in KBUILD_DIR ($KBUILD_DIR) once and runs
every test of SET_FILE (default harness/sets/loop.list) LOOP_COUNT
($LOOP_COUNT) times in a row, then prints how often each test passed
and failed, and "N passed, N failed" over all runs.  Not part of make
check: it takes about 40 s per round under emulation.  Build first (make
check or make check-tree).
USAGE
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local set=${1:-$HARNESS_DIR/sets/loop.list} looped i status=0 name
	ensure_dirs
	looped=$LOG_DIR/loop.list
	: >"$looped"
	for i in $(seq "$LOOP_COUNT"); do
		grep '^[^#]' "$set" >>"$looped"
	done
	QEMU_TIMEOUT=${QEMU_TIMEOUT:-$((LOOP_COUNT * 120 + 600))} \
		"$HARNESS_DIR/boot.sh" "$looped" loop >"$LOG_DIR/loop.out" || status=$?
	log "per test, over $LOOP_COUNT rounds:"
	# The results port's lines end in CR LF.
	tr -d '\r' <"$LOG_DIR/loop.ktap.log" >"$LOG_DIR/loop.ktap.txt"
	while read -r name _; do
		printf '  %-34s %3d passed, %3d failed\n' "$name" \
			"$(grep -caE "^ok [0-9]+ selftests: kvm: $name( |\$)" "$LOG_DIR/loop.ktap.txt" || true)" \
			"$(grep -caE "^not ok [0-9]+ selftests: kvm: $name( |\$)" "$LOG_DIR/loop.ktap.txt" || true)"
	done < <(grep '^[^#]' "$set")
	cat "$LOG_DIR/loop.out"
	return "$status"
}

main "$@"
