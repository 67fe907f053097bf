#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Golden-log tests for harness/ktap.py: no kernel, no QEMU.
#
# Each directory below golden/ holds ktap.log and console.log as a run would
# leave them, and expected: the summary ktap.py must print followed by a
# line "exit N".  A file named qemu-timeout means QEMU was killed; one
# named splats runs the parser as the debug kernel's run does (--splats);
# one named silence is harness/boot.sh's record of a silent test VM.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KTAP=$HERE/../ktap.py

usage() {
	echo "usage: $0 [--update]   (--update rewrites the expected files: review the diff)"
}

run_case() {
	local dir=$1 flags=() status=0
	[ -e "$dir/qemu-timeout" ] && flags+=(--qemu-timeout)
	[ -e "$dir/splats" ] && flags+=(--splats)
	[ -e "$dir/silence" ] && flags+=(--silence "$dir/silence")
	python3 "$KTAP" --ktap "$dir/ktap.log" --console "$dir/console.log" \
		"${flags[@]}" || status=$?
	echo "exit $status"
}

main() {
	local update=0 pass=0 fail=0 dir name
	case "${1:-}" in
	--update) update=1 ;;
	-h|--help) usage; exit 0 ;;
	'') ;;
	*) usage >&2; exit 2 ;;
	esac
	for dir in "$HERE"/golden/*/; do
		dir=${dir%/}
		name=$(basename "$dir")
		if [ "$update" = 1 ]; then
			run_case "$dir" >"$dir/expected"
			continue
		fi
		if diff -u "$dir/expected" <(run_case "$dir") >"$HERE/.diff" 2>&1; then
			echo "ok golden/$name"
			pass=$((pass + 1))
		else
			echo "not ok golden/$name"
			sed 's/^/# /' "$HERE/.diff"
			fail=$((fail + 1))
		fi
		rm -f "$HERE/.diff"
	done
	[ "$update" = 1 ] && exit 0
	echo "parser golden logs: $pass passed, $fail failed"
	[ "$fail" -eq 0 ]
}

main "$@"
