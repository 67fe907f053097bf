#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make fuzz-loop: tsc_state_fuzz's concurrency cases many times in one boot
# of the debug kernel, each run with its own seed and a trace for hangs.
set -euo pipefail
SCRIPT_NAME=fuzz-loop
. "$(dirname "$0")/lib.sh"

FUZZ_COUNT=${FUZZ_COUNT:-300}
FUZZ_CASES=${FUZZ_CASES:-concurrency,kvmclock_race}
FUZZ_WATCHDOG=${FUZZ_WATCHDOG:-180}

usage() {
	cat <<USAGE
usage: $0

Builds the debug kernel as make check-debug does (BUILD_DIR/kbuild-debug;
NO_BUILD=1 boots the one there), boots it once and runs
"tsc_state_fuzz -c FUZZ_CASES -t -w FUZZ_WATCHDOG" FUZZ_COUNT ($FUZZ_COUNT)
times, each with a fresh seed.  FUZZ_CASES ($FUZZ_CASES) is a -c list of
tsc_state_fuzz; FUZZ_WATCHDOG ($FUZZ_WATCHDOG) is the seconds after which
a run counts as hung: it then dumps every task's stack (sysrq-t), its
threads' wait channels and the last lines of a trace of KVM's and the
hrtimer events.  Prints the runs passed, failed and hung, and the seed
of each failure (replay: tsc_state_fuzz -s SEED -c FUZZ_CASES).  Any
debug-kernel report fails the loop.
USAGE
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local set status=0 fragments i out
	export KBUILD_DIR=$BUILD_DIR/kbuild-debug
	export SELFTEST_DIR=$BUILD_DIR/selftests-debug
	if [ -z "${NO_BUILD:-}" ]; then
		mapfile -t fragments < <(kvm_test_fragments)
		build_series "${fragments[@]}" "$HARNESS_DIR/config/debug.config"
	fi
	ensure_dirs
	set=$LOG_DIR/fuzz-loop.list
	: >"$set"
	for i in $(seq "$FUZZ_COUNT"); do
		echo "tsc_state_fuzz $((FUZZ_WATCHDOG + 60)) -c $FUZZ_CASES -t -w $FUZZ_WATCHDOG" >>"$set"
	done
	out=$LOG_DIR/fuzz-loop.out
	QEMU_TIMEOUT=${QEMU_TIMEOUT:-$((FUZZ_COUNT * 60 + 600))} KTAP_FLAGS=--splats \
		"$HARNESS_DIR/boot.sh" "$set" fuzz-loop >"$out" || status=$?
	# The results port's lines end in CR LF.
	tr -d '\r' <"$LOG_DIR/fuzz-loop.ktap.log" | awk -v count="$FUZZ_COUNT" '
		/^# # seed / { seed = $4 }
		/^ok [0-9]+ selftests: kvm: tsc_state_fuzz/ { ok++ }
		/^# Bail out! watchdog/ { hung++; print "hung:   seed " seed }
		/^not ok [0-9]+ selftests: kvm: tsc_state_fuzz/ { bad++; print "failed: seed " seed " (" $0 ")" }
		END {
			printf "fuzz-loop: %d of %d runs passed, %d failed (%d hung), %d did not report\n",
			       ok, count, bad, hung, count - ok - bad
		}'
	cat "$out"
	return "$status"
}

main "$@"
