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
times, each with a fresh seed.  FUZZ_BASE=1 does the same on the
unpatched base (its own tree and debug kernel, BUILD_DIR/linux-base and
BUILD_DIR/kbuild-debug-base) with tsc_state_fuzz -b: the same
concurrency with KVM_VCPU_TSC_OFFSET and KVM_SET_CLOCK in place of the
series' ioctls.  FUZZ_CASES ($FUZZ_CASES) is a -c list of
tsc_state_fuzz; FUZZ_WATCHDOG ($FUZZ_WATCHDOG) is the seconds after which
a case counts as hung: it then dumps every task's stack (sysrq-t), its
threads' wait channels and the last lines of a trace of KVM's and the
hrtimer events.  Prints the runs passed, failed and hung, the seed of
each failure (replay: tsc_state_fuzz -s SEED -c FUZZ_CASES), and how
often a case met the emulator's recorded corruption and ran again (see
on_bad_exit() in harness/guest/tsc_state_fuzz.c).  Any debug-kernel
report fails the loop.
USAGE
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local set status=0 fragments i out args="" name=fuzz-loop${FUZZ_BASE:+-base} ncases
	mapfile -t fragments < <(kvm_test_fragments)
	fragments+=("$HARNESS_DIR/config/debug.config")
	if [ -n "${FUZZ_BASE:-}" ]; then
		export TREE_DIR=$BUILD_DIR/linux-base
		export KBUILD_DIR=$BUILD_DIR/kbuild-debug-base
		export SELFTEST_DIR=$BUILD_DIR/selftests-debug-base
		args=" -b"
		if [ -z "${NO_BUILD:-}" ]; then
			"$HARNESS_DIR/deps.sh"
			apply_base_tree
			"$HARNESS_DIR/kernel.sh" "${fragments[@]}"
			# The uAPI headers (for the guest tools) and the selftests.
			"$HARNESS_DIR/selftests.sh"
		fi
	else
		export KBUILD_DIR=$BUILD_DIR/kbuild-debug
		export SELFTEST_DIR=$BUILD_DIR/selftests-debug
		[ -n "${NO_BUILD:-}" ] || build_series "${fragments[@]}"
	fi
	ensure_dirs
	set=$LOG_DIR/$name.list
	: >"$set"
	# The watchdog bounds each case; the run's timeout, all of them.
	ncases=$(tr ',' '\n' <<<"$FUZZ_CASES" | grep -c .)
	for i in $(seq "$FUZZ_COUNT"); do
		echo "tsc_state_fuzz $((ncases * FUZZ_WATCHDOG + 60)) -c $FUZZ_CASES -t -w $FUZZ_WATCHDOG$args" >>"$set"
	done
	out=$LOG_DIR/$name.out
	QEMU_TIMEOUT=${QEMU_TIMEOUT:-$((FUZZ_COUNT * 60 + 600))} KTAP_FLAGS=--splats \
		"$HARNESS_DIR/boot.sh" "$set" "$name" >"$out" || status=$?
	# The results port's lines end in CR LF.
	tr -d '\r' <"$LOG_DIR/$name.ktap.log" | awk -v count="$FUZZ_COUNT" -v name="$name" '
		/^# # seed / { seed = $4 }
		/^ok [0-9]+ selftests: kvm: tsc_state_fuzz/ { ok++ }
		/^# Bail out! watchdog/ { hung++; print "hung:   seed " seed }
		/^# # .*: rerun once after the emulator/ { emu++; print "emulator: seed " seed " (" $3 " ran again)" }
		/^not ok [0-9]+ selftests: kvm: tsc_state_fuzz/ { bad++; print "failed: seed " seed " (" $0 ")" }
		END {
			printf "%s: %d of %d runs passed, %d failed (%d hung), %d did not report; %d cases ran again after the emulator'"'"'s corruption\n",
			       name, ok, count, bad, hung, count - ok - bad, emu
		}'
	cat "$out"
	return "$status"
}

main "$@"
