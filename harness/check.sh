#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The test command: every stage from packages to the boot, timed.
set -euo pipefail
SCRIPT_NAME=check
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0 [SET_FILE]

Installs missing packages and fetches the pinned inputs, runs the parser's
golden-log tests and the pins' self-tests, says whether Debian serves a
newer base than the pinned one (informational: never fails the run;
'make newer-base' tries the series there), applies
patches/linux and patches/qemu to their bases (unless NO_APPLY=1: then the
work trees are tested as they are, uncommitted edits included), builds the
kernel, the patched QEMU, the same QEMU unpatched (the e2e's stock one)
and the selftests, boots the kernel under QEMU and runs SET_FILE (default
harness/sets/tsc.list), then the end-to-end migrations (harness/e2e.sh),
then for each backport (base.conf's LINUX_BASES after mainline) the same
on its own base, with the QEMU backport LINUX_QEMU pairs it with, then
the series' quality gates (for a backport: BACKPORT_GATES, default
"apply distro")
(harness/gates.sh) and their self-tests (unless NO_GATES=1).
Stages that are one process each or use other directories run side by
side: the other series' apply stages beside the mainline kernel's, the
backports' gates beside the gates' self-tests (and, in gates.sh and
test_gates.sh, the gates of the QEMU worktree beside the kernel's).
Prints the time of each stage, then the summary: one line
"N passed, N failed, N skipped" and the name of each failure.
USAGE
}

STAGE_TIMES=()
# The backports (every base but mainline) and the gates they run.
mapfile -t BACKPORTS < <(linux_bases | tail -n +2)
BACKPORT_GATES=${BACKPORT_GATES:-"apply distro"}

# apply_others: every series but the mainline kernel's applied to its
# base (the backports' kernel and QEMU series, the mainline QEMU series),
# stage by stage; stops at the first that fails.
apply_others() {
	local b
	stage qemu-apply "$HARNESS_DIR/tree.sh" qemu apply || return 1
	for b in "${BACKPORTS[@]}"; do
		stage "apply-$b" env LINUX_BASE="$b" "$HARNESS_DIR/tree.sh" apply || return 1
		stage "qemu-apply-$b" env LINUX_BASE="$b" "$HARNESS_DIR/tree.sh" qemu apply || return 1
	done
}

# check_backport NAME SET RUN_NAME: the backport's kernel and selftests
# built (its series applied by apply_others), its TSC selftests run.
check_backport() {
	local b=$1 set=$2 run_name=$3 blog status=0
	blog=$(LINUX_BASE=$b bash -c ". '$HARNESS_DIR/lib.sh'; echo \$LOG_DIR")
	mkdir -p "$blog"
	stage "kernel-$b" env LINUX_BASE="$b" "$HARNESS_DIR/kernel.sh" || return 1
	stage "selftests-$b" env LINUX_BASE="$b" "$HARNESS_DIR/selftests.sh" || return 1
	stage "boot-$b" env LINUX_BASE="$b" "$HARNESS_DIR/boot.sh" "$set" "$run_name" \
		>"$blog/$run_name.out" || status=$?
	# The QEMU backport paired with this kernel (base.conf's LINUX_QEMU),
	# and its migrations on this kernel.
	stage "qemu-$b" env LINUX_BASE="$b" "$HARNESS_DIR/qemu.sh" || return 1
	if [ -z "$(LINUX_BASE=$b bash -c ". '$HARNESS_DIR/lib.sh'; echo \$QEMU_BASE_STOCK")" ]; then
		stage "qemu-stock-$b" env LINUX_BASE="$b" "$HARNESS_DIR/qemu.sh" stock || return 1
	fi
	stage "e2e-$b" env LINUX_BASE="$b" "$HARNESS_DIR/e2e.sh" >"$blog/e2e.out" || status=$?
	return "$status"
}

# stage NAME CMD...: run a stage and remember how long it took.
stage() {
	local name=$1 start status=0
	shift
	start=$(date +%s)
	log "=== $name"
	"$@" || status=$?
	STAGE_TIMES+=("$(printf '%-12s %4d s' "$name" $(($(date +%s) - start)))")
	return "$status"
}

print_times() {
	local t
	log "stage times:"
	for t in "${STAGE_TIMES[@]}"; do
		log "  $t"
	done
}

# ccache_counts: "HITS MISSES" of the compiler cache so far (lib.sh).
ccache_counts() {
	command -v ccache >/dev/null && [ "${CCACHE:-1}" != 0 ] || { echo "0 0"; return; }
	ccache --print-stats 2>/dev/null | awk '
		$1 == "direct_cache_hit" || $1 == "preprocessed_cache_hit" { h += $2 }
		$1 == "cache_miss" { m += $2 }
		END { print h + 0, m + 0 }'
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local set=${1:-$HARNESS_DIR/sets/tsc.list} run_name status=0 total t
	run_name=$(basename "${set%.list}")
	total=$(date +%s)
	ensure_dirs
	local cc_start
	cc_start=$(ccache_counts)
	stage deps "$HARNESS_DIR/deps.sh"
	stage parser "$HARNESS_DIR/tests/test_ktap.sh" >&2 ||
		die "$EXIT_TESTS" "the KTAP parser fails its golden-log tests"
	# The pins' self-tests and the newer-base lookup wait on Debian's
	# archive, the apply stages on the disk: they run side by side.  The
	# pins' result is checked before anything is built.
	local pins_pid pins_rc=0 pins_start
	pins_start=$(date +%s)
	{
		"$HARNESS_DIR/tests/test_fetch.sh" >"$LOG_DIR/pins.out" 2>"$LOG_DIR/pins.log" || exit 1
		"$HARNESS_DIR/newer.sh" lookup >"$LOG_DIR/newer-base.out" 2>"$LOG_DIR/newer-base.log" ||
			echo "newer base: the check itself failed (informational; see $LOG_DIR/newer-base.log)" >>"$LOG_DIR/newer-base.out"
	} &
	pins_pid=$!
	log "=== pins, newer-base (in the background)"
	if [ "${NO_APPLY:-0}" = 1 ]; then
		log "NO_APPLY=1: testing $TREE_DIR as it is"
	else
		# The mainline kernel's apply here, the other series' beside it:
		# each is one process on one core (tar, git add, git am).
		local others_pid others_rc=0 others_start
		others_start=$(date +%s)
		log "=== qemu-apply, apply and qemu-apply of each backport (in the background; log: $LOG_DIR/apply-others.log)"
		(
			STAGE_TIMES=()
			rc=0
			apply_others || rc=$?
			printf '%s\n' "${STAGE_TIMES[@]}" >"$LOG_DIR/apply-others.times"
			exit "$rc"
		) >"$LOG_DIR/apply-others.log" 2>&1 &
		others_pid=$!
		stage apply "$HARNESS_DIR/tree.sh" apply || status=1
		wait "$others_pid" || others_rc=$?
		cat "$LOG_DIR/apply-others.log" >&2
		while IFS= read -r t; do
			STAGE_TIMES+=("$t (beside apply)")
		done <"$LOG_DIR/apply-others.times"
		STAGE_TIMES+=("$(printf '%-12s %4d s' "apply (all)" $(($(date +%s) - others_start)))")
		if [ "$status" != 0 ] || [ "$others_rc" != 0 ]; then
			wait "$pins_pid" || true
			return 1
		fi
	fi
	wait "$pins_pid" || pins_rc=$?
	STAGE_TIMES+=("$(printf '%-12s %4d s' "pins+newer" $(($(date +%s) - pins_start))) (beside apply)")
	[ "$pins_rc" = 0 ] ||
		{ cat "$LOG_DIR/pins.out" "$LOG_DIR/pins.log" >&2; die "$EXIT_TESTS" "the pins' self-tests fail"; }
	cat "$LOG_DIR/pins.out" "$LOG_DIR/newer-base.out" >&2
	stage kernel "$HARNESS_DIR/kernel.sh"
	stage qemu "$HARNESS_DIR/qemu.sh"
	[ -n "$QEMU_BASE_STOCK" ] || stage qemu-stock "$HARNESS_DIR/qemu.sh" stock
	stage selftests "$HARNESS_DIR/selftests.sh"
	stage boot "$HARNESS_DIR/boot.sh" "$set" "$run_name" >"$LOG_DIR/$run_name.out" || status=$?
	stage e2e "$HARNESS_DIR/e2e.sh" >"$LOG_DIR/e2e.out" || status=$?
	local b blog
	for b in "${BACKPORTS[@]}"; do
		check_backport "$b" "$set" "$run_name" || status=1
	done
	if [ "${NO_GATES:-0}" = 1 ]; then
		log "NO_GATES=1: series quality gates not run"
	else
		stage gates "$HARNESS_DIR/gates.sh" >"$LOG_DIR/gates.out" 2>"$LOG_DIR/gates.log" || status=$?
		# The backports' gates (their own trees and build directories)
		# beside the gates' self-tests.
		local bp_pid bp_rc=0 bp_start
		bp_start=$(date +%s)
		(
			STAGE_TIMES=()
			rc=0
			for b in "${BACKPORTS[@]}"; do
				blog=$(LINUX_BASE=$b bash -c ". '$HARNESS_DIR/lib.sh'; echo \$LOG_DIR")
				stage "gates-$b" env LINUX_BASE="$b" "$HARNESS_DIR/gates.sh" $BACKPORT_GATES \
					>"$blog/gates.out" 2>"$blog/gates.log" || rc=1
			done
			printf '%s\n' "${STAGE_TIMES[@]}" >"$LOG_DIR/gates-backports.times"
			exit "$rc"
		) 2>"$LOG_DIR/gates-backports.log" &
		bp_pid=$!
		stage gate-tests "$HARNESS_DIR/tests/test_gates.sh" >"$LOG_DIR/gate-tests.out" \
			2>"$LOG_DIR/gate-tests.log" || status=$?
		wait "$bp_pid" || bp_rc=$?
		cat "$LOG_DIR/gates-backports.log" >&2
		while IFS= read -r t; do
			STAGE_TIMES+=("$t (beside gate-tests)")
		done <"$LOG_DIR/gates-backports.times"
		[ "$bp_rc" = 0 ] || status=1
	fi
	STAGE_TIMES+=("$(printf '%-12s %4d s' total $(($(date +%s) - total)))")
	print_times
	if [ "${CCACHE:-1}" != 0 ] && command -v ccache >/dev/null; then
		local h0 m0 h1 m1
		read -r h0 m0 <<<"$cc_start"
		read -r h1 m1 < <(ccache_counts)
		log "compiler cache (${CCACHE_DIR:-~/.cache/ccache}; CCACHE=0 turns it off): $((h1 - h0)) hits, $((m1 - m0)) misses in this run"
	else
		log "compiler cache: off"
	fi
	log "logs: $LOG_DIR (build.log, qemu-build.log, selftests.log, $run_name.console.log, $run_name.ktap.log, $run_name.summary.txt, e2e.*, gates.log)"
	[ -f "$LOG_DIR/gates.out" ] && [ "${NO_GATES:-0}" != 1 ] &&
		cat "$LOG_DIR/gates.out" "$LOG_DIR/gate-tests.out"
	for b in "${BACKPORTS[@]}"; do
		blog=$(LINUX_BASE=$b bash -c ". '$HARNESS_DIR/lib.sh'; echo \$LOG_DIR")
		[ "${NO_GATES:-0}" != 1 ] && cat "$blog/gates.out"
		echo "== TSC selftests on the $b backport ($set)"
		cat "$blog/$run_name.out"
		echo "== end-to-end migrations on the $b backport ($blog/e2e.ktap.log)"
		cat "$blog/e2e.out" 2>/dev/null || echo "(not run)"
	done
	echo "== newer bases (harness/newer.sh, informational)"
	cat "$LOG_DIR/newer-base.out"
	echo "== end-to-end migrations (harness/e2e.sh; $LOG_DIR/e2e.ktap.log)"
	cat "$LOG_DIR/e2e.out"
	echo "== TSC selftests ($set)"
	cat "$LOG_DIR/$run_name.out"
	return "$status"
}

main "$@"
