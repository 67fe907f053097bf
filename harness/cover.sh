#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Write a series' 0000-cover-letter.patch: harness/cover/KIND.txt plus the
# base, shortlog and diffstat of the work tree's series (KIND: linux, qemu).
set -euo pipefail
SCRIPT_NAME=cover
. "$(dirname "$0")/lib.sh"

usage() {
	echo "usage: $0 [linux|qemu]   (run by 'harness/tree.sh [qemu] export')"
}

# The base lines of the cover letter.
base_lines() {
	if [ "$1" = qemu ]; then
		echo "Base: Debian's $QEMU_BASE_PACKAGE $QEMU_BASE_VERSION ($QEMU_BASE_SUITES; $QEMU_BASE_NAME"
		echo "with Debian's patches), $QEMU_BASE_DSC sha256 $QEMU_BASE_DSC_SHA256"
	else
		echo "Base: Debian $BASE_PACKAGE $BASE_VERSION (Linux $BASE_KERNELVERSION),"
		echo "$(basename "$BASE_TARBALL") sha256 $BASE_SHA256"
	fi
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local kind=${1:-linux} subject n author out=$PATCH_DIR/0000-cover-letter.patch
	case "$kind" in
	linux) subject="KVM: x86: Precise guest TSC migration"
		[ "$LINUX_BASE" = mainline ] || subject="$subject (backport to $LINUX_BASE)" ;;
	qemu) subject="target/i386/kvm: Precise TSC migration with KVM_{GET,SET}_TSC_STATE"
		[ "$QEMU_BASE" = mainline ] || subject="$subject (backport to $QEMU_BASE)" ;;
	*) usage >&2; exit "$EXIT_USAGE" ;;
	esac
	n=$(git -C "$TREE_DIR" rev-list --count base..HEAD)
	author=$(git -C "$TREE_DIR" log -1 --format='%an <%ae>' HEAD)
	{
		echo "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001"
		echo "From: $author"
		echo "Subject: [PATCH 0/$n] ${COVER_SUBJECT:-$subject}"
		echo
		# A backport has its own text, harness/cover/KIND-NAME.txt.
		if [ "$kind" = linux ] && [ "$LINUX_BASE" != mainline ]; then
			cat "$HARNESS_DIR/cover/linux-$LINUX_BASE.txt"
		elif [ "$kind" = qemu ] && [ "$QEMU_BASE" != mainline ]; then
			cat "$HARNESS_DIR/cover/qemu-$QEMU_BASE.txt"
		else
			cat "$HARNESS_DIR/cover/$kind.txt"
		fi
		echo
		base_lines "$kind"
		echo
		git -C "$TREE_DIR" shortlog base..HEAD
		git -C "$TREE_DIR" diff --stat=72 base..HEAD
		echo
	} >"$out"
	log "wrote $out"
}

main "$@"
