#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The main job: boot the patched kernel and migrate a guest's TSC three ways.
set -euo pipefail
SCRIPT_NAME=demo
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0

Applies patches/, builds, boots the kernel under QEMU and runs the
reference VMM demo/tsc_migrate.c (harness/sets/demo.list): a 4-vCPU guest's
TSC saved, paused 500 ms and restored into a new VM with legacy MSRs, the
upstream KVM_GET_CLOCK + KVM_VCPU_TSC_OFFSET recipe, and
KVM_GET/SET_TSC_STATE; with 100 ms between per-vCPU calls, then the 2020
review's 1 s, then with CLOCK_REALTIME stepped 1 s between two restores.
Prints one table per scenario (skew, TSC error, kvmclock vs TSC,
KVM_CLOCK_TSC_STABLE, backwards reads, cost).  Logs: LOG_DIR/demo.*.

Environment:
  NO_BUILD=1   boot the kernel and selftests already built in KBUILD_DIR and
               SELFTEST_DIR: no packages, apply or build steps
USAGE
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	ensure_dirs
	if [ "${NO_BUILD:-0}" = 1 ]; then
		log "NO_BUILD=1: booting $KBUILD_DIR as it is"
	else
		build_series
	fi
	local status=0
	"$HARNESS_DIR/boot.sh" "$HARNESS_DIR/sets/demo.list" demo >"$LOG_DIR/demo.out" || status=$?
	echo
	echo "==== tsc_migrate on $(sed -n 's/^# harness: kernel \([^,]*\),.*/Linux \1/p' "$LOG_DIR/demo.ktap.log" | tr -d '\r' | head -n 1) under QEMU TCG"
	tr -d '\r' <"$LOG_DIR/demo.ktap.log" | awk '
		/^# selftests: kvm: / { n++; print ""; print "---- scenario " n; next }
		/^# harness:/ { next }
		/^(not )?ok / { next }
		/^# / { sub(/^# /, ""); print }'
	echo
	echo "==== summary ($LOG_DIR/demo.ktap.log, $LOG_DIR/demo.console.log)"
	cat "$LOG_DIR/demo.out"
	return "$status"
}

main "$@"
