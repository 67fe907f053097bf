#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make mutants: plant each known bug of harness/mutants/ in a copy of the
# series and check that the TSC selftests or the harness's TSC tools catch it.
set -euo pipefail
SCRIPT_NAME=mutants
. "$(dirname "$0")/lib.sh"

MUTANT_DIR=${MUTANT_DIR:-$BUILD_DIR/mutants}
MUTANT_TESTS="x86/tsc_msrs_test
x86/tsc_offset_test
x86/tsc_state_test
tsc_clock_steps
tsc_state_fuzz"

usage() {
	cat <<USAGE
usage: $0 [NAME...]

Each harness/mutants/NAME.diff is a bug planted in arch/x86/kvm/ of
the series; its "# kills:" line names the test that must catch it (a
selftest, or a harness tool such as tsc_clock_steps) and, optionally,
the cases of it that may be the first to fail.  For
each one (default: all), this applies the diff to a git worktree of
$TREE_DIR at HEAD ($MUTANT_DIR/linux), builds that kernel in
$MUTANT_DIR/kbuild with the test kernel's .config, boots it with
tsc_msrs_test, tsc_offset_test, tsc_state_test, tsc_clock_steps and
tsc_state_fuzz (and its kill line's test if it is another), and
counts the mutant as caught when the named test fails (at one of the named cases).  The selftests
and the work tree are not touched.  Needs a built series (make check or
make check-tree first).  Prints one line per mutant, then
"N passed, N failed".
USAGE
}

prepare_worktree() {
	local wt=$MUTANT_DIR/linux
	mkdir -p "$MUTANT_DIR"
	if [ ! -e "$wt/.git" ]; then
		run git -C "$TREE_DIR" worktree add --detach "$wt" HEAD >&2
	fi
	run git -C "$wt" checkout -q --detach "$(git -C "$TREE_DIR" rev-parse HEAD)"
	run git -C "$wt" reset -q --hard
	mkdir -p "$MUTANT_DIR/kbuild"
	cp "$KBUILD_DIR/.config" "$MUTANT_DIR/kbuild/.config"
}

# first_failure KTAP TEST: the first case of the set's TEST that reported
# "not ok", in the order the test ran them, or "no-case" when the test
# failed without a failing case (a crash, a timeout).
first_failure() {
	local name
	name=$(tr -d '\r' <"$1" | awk -v test="$2" '
		$0 == "# selftests: kvm: " test || $0 == "# selftests: kvm: x86/" test ||
			$0 == "# selftests: kvm: x86_64/" test { in_test = 1; next }
		in_test && /^(not )?ok / { exit }
		in_test && /^# not ok [0-9]+ / {
			sub(/^# not ok [0-9]+ /, ""); sub(/^[a-z0-9_]+\./, ""); sub(/ .*/, ""); print; exit
		}')
	echo "${name:-no-case}"
}

run_mutant() {
	local diff=$1 name wt=$MUTANT_DIR/linux test cases failed=none ktap set
	name=$(basename "$diff" .diff)
	read -r test cases < <(sed -n 's/^# kills: //p' "$diff")
	git -C "$wt" reset -q --hard
	git -C "$wt" apply "$diff" || die "$EXIT_USAGE" "$diff does not apply to the series"
	run_logged "$MUTANT_DIR/build.log" make -C "$wt" O="$MUTANT_DIR/kbuild" ARCH=x86_64 \
		-j"$JOBS" bzImage modules headers || die "$EXIT_BUILD" "mutant $name does not build"
	set=$MUTANT_DIR/$name.list
	echo "$MUTANT_TESTS" >"$set"
	# A test outside the usual set (e.g. set_memory_region_test) runs for its mutant.
	grep -qxE "(x86/)?$test" "$set" || echo "$test" >>"$set"
	BUILD_DIR=$MUTANT_DIR LOG_DIR=$MUTANT_DIR/logs TREE_DIR=$wt KBUILD_DIR=$MUTANT_DIR/kbuild \
		SELFTEST_DIR=$SELFTEST_DIR \
		"$HARNESS_DIR/boot.sh" "$set" "$name" >"$MUTANT_DIR/$name.out" 2>&1 || true
	ktap=$MUTANT_DIR/logs/$name.ktap.log
	git -C "$wt" reset -q --hard
	if grep -qE "^not ok [0-9]+ selftests: kvm: (x86/)?$test( |\$)" "$ktap"; then
		failed=$test
		if [ -n "$cases" ]; then
			failed=$(first_failure "$ktap" "$test")
		fi
	fi
	if [ "$failed" != none ] && { [ -z "$cases" ] || [[ " $cases " == *" $failed "* ]]; }; then
		printf "caught  %-24s by %s%s\n" "$name" "$test" "${failed:+ ${failed#"$test"}}"
		return 0
	fi
	printf 'MISSED  %-24s %s: first failing case %s (expected: %s)\n' "$name" "$test" \
		"$failed" "${cases:-any}"
	return 1
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local diffs=() d pass=0 fail=0 missed=()
	[ -f "$KBUILD_DIR/.config" ] || die "$EXIT_BUILD" "no kernel in $KBUILD_DIR: run make check-tree first"
	if [ $# -gt 0 ]; then
		for d in "$@"; do diffs+=("$HARNESS_DIR/mutants/$d.diff"); done
	else
		diffs=("$HARNESS_DIR"/mutants/*.diff)
	fi
	prepare_worktree
	for d in "${diffs[@]}"; do
		if run_mutant "$d"; then
			pass=$((pass + 1))
		else
			fail=$((fail + 1))
			missed+=("$(basename "$d" .diff)")
		fi
	done
	echo "$pass passed, $fail failed"
	for d in "${missed[@]}"; do echo "FAIL: mutant $d not caught"; done
	[ "$fail" -eq 0 ]
}

main "$@"
