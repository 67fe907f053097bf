#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Each gate of harness/gates.sh must fail on a deliberately broken input:
# no gate is a check that cannot fail.  Builds reuse the gates' build
# directories, so after a gates run this takes a few minutes.
set -euo pipefail
SCRIPT_NAME=test-gates
. "$(dirname "$0")/../lib.sh"

usage() {
	cat <<USAGE
usage: $0 [CASE...]

Cases: ${CASES[*]}.  Each builds a broken series (or cover letter, or
header) in a scratch directory, runs the gate on it and expects it to
fail, naming the gate.  Prints "ok"/"not ok" per case and a total.
USAGE
}

CASES=(tools checkpatch cover apply bisect sparse i386 distro uapi htmldocs maintainers
	qemu_checkpatch qemu_cover qemu_headers qemu_bisect)
GATES=$HARNESS_DIR/gates.sh
GATES_DIR=${GATES_DIR:-$BUILD_DIR/gates}
SCRATCH=$GATES_DIR/selftest
GTREE=$GATES_DIR/tree
QTREE=$GATES_DIR/qemu-tree
export GATES_DIR

# patch_in TREE PREFIX NAME FILE CONTENT_CMD...: a patch, made in the
# worktree TREE on top of the base, that lets CONTENT_CMD change FILE.
patch_in() {
	local tree=$1 prefix=$2 name=$3 file=$4
	shift 4
	git -C "$tree" am --abort >/dev/null 2>&1 || true
	git -C "$tree" checkout -q --detach -f base
	(cd "$tree" && "$@" "$file")
	git -C "$tree" add -f "$file"
	git -C "$tree" -c user.name=gate-test -c user.email=gate@test commit -q -s \
		-m "$prefix: Gate self-test: $name" -m "Deliberately broken input for the $name gate."
	git -C "$tree" format-patch -q --stdout -1 >"$SCRATCH/$name.patch"
	git -C "$tree" checkout -q --detach -f base
}

# make_patch NAME FILE CONTENT_CMD...: such a patch of the kernel.
make_patch() {
	patch_in "$GTREE" "KVM: x86" "$@"
}

# series DIR PATCH...: a patch directory with a series file, and the real
# cover letter.
series() {
	local dir=$1 p
	shift
	rm -rf "$dir"
	mkdir -p "$dir"
	for p in "$@"; do
		cp "$p" "$dir/"
		basename "$p" >>"$dir/series"
	done
	cp "$PATCH_DIR/0000-cover-letter.patch" "$dir/" 2>/dev/null || true
}

append_to() {	# append_to TEXT FILE
	printf '%s\n' "$1" >>"$2"
}

new_file() {	# new_file TEXT FILE
	printf '%s\n' "$1" >"$2"
}

# broken_patch GATE FILE CMD TEXT: one patch in which CMD (new_file or
# append_to) puts TEXT into FILE; the gate must fail on it.
broken_patch() {
	make_patch "$1" "$2" "$3" "$4"
	series "$SCRATCH/$1" "$SCRATCH/$1.patch"
	expect_fail "$1" PATCH_DIR="$SCRATCH/$1"
}

# expect_fail GATE [ENV=VALUE...]: the gate must fail and say so.
expect_fail() {
	local gate=$1 out status=0
	shift
	out=$(env "$@" "$GATES" "$gate" 2>&1) || status=$?
	echo "$out" >"$SCRATCH/$gate.out"
	if [ "$status" -ne 0 ] && grep -q "^FAIL $gate " <<<"$out"; then
		return 0
	fi
	log "gate $gate did not fail (status $status); output in $SCRATCH/$gate.out"
	return 1
}

case_tools() {
	cat >"$SCRATCH/tools.patch" <<'EOF'
Subject: [PATCH] tools: Edit the copy of kvm.h

---
diff --git a/tools/include/uapi/linux/kvm.h b/tools/include/uapi/linux/kvm.h
--- a/tools/include/uapi/linux/kvm.h
+++ b/tools/include/uapi/linux/kvm.h
@@ -1,1 +1,1 @@
-x
+y
EOF
	series "$SCRATCH/tools" "$SCRATCH/tools.patch"
	expect_fail tools PATCH_DIR="$SCRATCH/tools"
}

case_checkpatch() {
	broken_patch checkpatch arch/x86/kvm/gate_test.c new_file \
		"$(printf '// SPDX-License-Identifier: GPL-2.0\nint gate_test = 1; ')"
}

case_cover() {
	grep -v "Not tested" "$PATCH_DIR/0000-cover-letter.patch" >"$SCRATCH/cover.patch"
	expect_fail cover COVER_LETTER="$SCRATCH/cover.patch"
}

case_apply() {
	# Trailing whitespace: git am --whitespace=error-all refuses it.
	broken_patch apply arch/x86/kvm/gate_test.c new_file \
		"$(printf '// SPDX-License-Identifier: GPL-2.0\nint gate_test = 1; \t')"
}

case_bisect() {
	# Patch 1 breaks the build, patch 2 mends it: only the prefix fails.
	make_patch bisect-1 arch/x86/kvm/x86.c append_to "static int gate_test_broken = ;"
	git -C "$GTREE" am -q "$SCRATCH/bisect-1.patch"
	git -C "$GTREE" checkout -q base -- arch/x86/kvm/x86.c
	git -C "$GTREE" -c user.name=gate-test -c user.email=gate@test commit -q -s -a \
		-m "KVM: x86: Gate self-test: mend the build"
	git -C "$GTREE" format-patch -q --stdout -1 >"$SCRATCH/bisect-2.patch"
	git -C "$GTREE" checkout -q --detach -f base
	series "$SCRATCH/bisect" "$SCRATCH/bisect-1.patch" "$SCRATCH/bisect-2.patch"
	expect_fail bisect PATCH_DIR="$SCRATCH/bisect" &&
		grep -q "patches 1-1 do not build" "$SCRATCH/bisect.out"
}

case_sparse() {
	broken_patch sparse arch/x86/kvm/x86.c append_to \
		"static int __maybe_unused gate_test_sparse(void __user *p) { return *(int *)p; }"
}

case_i386() {
	# x86_64-only code used outside CONFIG_X86_64.
	broken_patch i386 arch/x86/kvm/x86.c append_to \
		"static bool __maybe_unused gate_test_i386(void) { struct timespec64 ts; u64 t; return kvm_get_walltime_and_clockread(&ts, &t); }"
}

case_distro() {
	# A W=1 warning (no prototype) that only a distro config compiles:
	# code under CONFIG_KVM_AMD_SEV, which the test fragment leaves off.
	broken_patch distro arch/x86/kvm/x86.c append_to \
		"$(printf '#ifdef CONFIG_KVM_AMD_SEV\nint gate_test_distro(void) { return 0; }\n#endif')"
}

case_uapi() {
	# The installed headers, with a hidden hole in struct kvm_tsc_state.
	local inc=$SCRATCH/uapi-include
	[ -d "$GATES_DIR/uapi-headers/include" ] || "$GATES" uapi >/dev/null 2>&1 || true
	rm -rf "$inc"
	cp -r "$GATES_DIR/uapi-headers/include" "$inc"
	# The 2020 layout: no explicit padding after flags (pad moves to the end).
	sed -i '/^struct kvm_tsc_state {/,/^};/ { /__u32 pad;/d; s/__u64 reserved\[6\];/&\n\t__u32 pad;/ }' \
		"$inc/linux/kvm.h"
	sed -n '/^struct kvm_tsc_state {/,/^};/p' "$inc/linux/kvm.h" | grep -q 'reserved.*' ||
		{ log "could not plant the hole"; return 1; }
	expect_fail uapi UAPI_INCLUDE="$inc"
}

case_htmldocs() {
	# A malformed table in api.rst, which the series touches: the bottom
	# border is shorter than the row.  ("| a | b |" under a border with no
	# "+" in the middle is one valid cell, "a | b": it fails nothing.)
	broken_patch htmldocs Documentation/virt/kvm/api.rst append_to \
		"$(printf '\nGate self-test\n==============\n\n+-----+-----+\n| a   | b   |\n+-----+\n')"
}

case_maintainers() {
	broken_patch maintainers lib/gate_test_unowned.c new_file \
		"$(printf '// SPDX-License-Identifier: GPL-2.0\nint gate_test;')"
}

# qemu_make_patch NAME FILE CMD TEXT: a QEMU patch on top of the QEMU base
# in which CMD (new_file or append_to) puts TEXT into FILE.
qemu_make_patch() {
	[ -d "$QEMU_TREE_DIR/.git" ] || "$HARNESS_DIR/tree.sh" qemu apply >/dev/null
	git_worktree "$QEMU_TREE_DIR" "$QTREE" base 2>/dev/null
	patch_in "$QTREE" target/i386/kvm "$1" "$2" "$3" "$4"
}

# qemu_series DIR PATCH...: a QEMU patch directory, with the real QEMU
# cover letter.
qemu_series() {
	PATCH_DIR=$QEMU_PATCH_DIR series "$@"
}

case_qemu_checkpatch() {
	qemu_make_patch qemu_checkpatch target/i386/kvm/kvm.c append_to \
		"/* $(printf '%0.sgate self-test: a line far longer than QEMU allows ' 1 2) */"
	qemu_series "$SCRATCH/qemu_checkpatch" "$SCRATCH/qemu_checkpatch.patch"
	expect_fail qemu_checkpatch QEMU_PATCH_DIR="$SCRATCH/qemu_checkpatch"
}

# qemu_whole_series DIR: the real QEMU series and cover letter, to break.
qemu_whole_series() {
	local name files=()
	while read -r name; do
		files+=("$QEMU_PATCH_DIR/$name")
	done <"$QEMU_PATCH_DIR/series"
	qemu_series "$1" "${files[@]}"
}

case_qemu_cover() {
	local dir=$SCRATCH/qemu_cover
	qemu_whole_series "$dir"
	append_to "@E2E_RESULTS@" "$dir/0000-cover-letter.patch"
	expect_fail qemu_cover QEMU_PATCH_DIR="$dir"
}

case_qemu_headers() {
	# The real series, with one field of the uAPI copy renamed.
	local dir=$SCRATCH/qemu_headers name
	qemu_whole_series "$dir"
	name=$(head -n 1 "$QEMU_PATCH_DIR/series")
	grep -q '^+	__u64 kvmclock_ns;' "$dir/$name" ||
		{ log "$name does not add kvmclock_ns"; return 1; }
	sed -i 's/^+	__u64 kvmclock_ns;/+	__u64 kvmclock_nsec;/' "$dir/$name"
	expect_fail qemu_headers QEMU_PATCH_DIR="$dir"
}

case_qemu_bisect() {
	# The real first patch, then one that does not compile.
	qemu_make_patch qemu_bisect target/i386/kvm/kvm.c append_to \
		"int gate_self_test(void) { return undeclared_gate_symbol; }"
	qemu_series "$SCRATCH/qemu_bisect" \
		"$QEMU_PATCH_DIR/$(head -n 1 "$QEMU_PATCH_DIR/series")" "$SCRATCH/qemu_bisect.patch"
	expect_fail qemu_bisect QEMU_PATCH_DIR="$SCRATCH/qemu_bisect"
}

# run_case CASE RESULTS: run it, append its "ok" line to RESULTS.
run_case() {
	local start
	start=$(date +%s)
	if "case_$1"; then
		echo "ok gate-fails/$1 ($(($(date +%s) - start)) s)" >>"$2"
	else
		echo "not ok gate-fails/$1" >>"$2"
	fi
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local cases=("$@") c passed=0 failed=0
	[ "${#cases[@]}" -gt 0 ] || cases=("${CASES[@]}")
	mkdir -p "$SCRATCH"
	# The worktree and base build must exist: the gates create them.
	[ -e "$GTREE/.git" ] || "$GATES" apply >/dev/null
	# The cases of the QEMU worktree alone run beside the others, in a
	# second process (TEST_GATES_PARALLEL=0: one after the other);
	# qemu_headers uses both worktrees and runs last.
	local side=() own=() last=() side_pid="" results=$SCRATCH/results
	: >"$results"
	: >"$results.side"
	for c in "${cases[@]}"; do
		case " $c " in
		" qemu_checkpatch "|" qemu_cover "|" qemu_bisect ")
			[ "${TEST_GATES_PARALLEL:-1}" != 0 ] && side+=("$c") || own+=("$c") ;;
		" qemu_headers ") last+=("$c") ;;
		*) own+=("$c") ;;
		esac
	done
	if [ "${#side[@]}" -gt 0 ]; then
		( for c in "${side[@]}"; do run_case "$c" "$results.side"; done ) \
			2>"$SCRATCH/side.log" &
		side_pid=$!
	fi
	for c in "${own[@]}"; do
		run_case "$c" "$results"
	done
	if [ -n "$side_pid" ]; then
		wait "$side_pid" || true
		cat "$SCRATCH/side.log" >&2
		cat "$results.side" >>"$results"
	fi
	for c in "${last[@]}"; do
		run_case "$c" "$results"
	done
	for c in "${cases[@]}"; do
		if grep -q "^ok gate-fails/$c " "$results"; then
			grep "^ok gate-fails/$c " "$results"
			passed=$((passed + 1))
		else
			echo "not ok gate-fails/$c"
			failed=$((failed + 1))
		fi
	done
	git -C "$GTREE" checkout -q --detach -f base
	[ -e "$QTREE/.git" ] && git -C "$QTREE" checkout -q --detach -f base
	echo "gate self-tests: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

main "$@"
