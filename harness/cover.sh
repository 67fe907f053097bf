#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Write patches/0000-cover-letter.patch: harness/cover/body.txt plus the
# base, shortlog and diffstat of the work tree's series.
set -euo pipefail
SCRIPT_NAME=cover
. "$(dirname "$0")/lib.sh"

COVER_SUBJECT=${COVER_SUBJECT:-"KVM: x86: Precise guest TSC migration"}

usage() {
	echo "usage: $0   (run by 'harness/tree.sh export')"
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local n author out=$PATCH_DIR/0000-cover-letter.patch
	n=$(git -C "$TREE_DIR" rev-list --count base..HEAD)
	author=$(git -C "$TREE_DIR" log -1 --format='%an <%ae>' HEAD)
	{
		echo "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001"
		echo "From: $author"
		echo "Subject: [PATCH 0/$n] $COVER_SUBJECT"
		echo
		cat "$HARNESS_DIR/cover/body.txt"
		echo
		echo "Base: Debian $BASE_PACKAGE $BASE_VERSION (Linux $BASE_KERNELVERSION),"
		echo "$(basename "$BASE_TARBALL") sha256 $BASE_SHA256"
		echo
		git -C "$TREE_DIR" shortlog base..HEAD
		git -C "$TREE_DIR" diff --stat=72 base..HEAD
		echo
	} >"$out"
	log "wrote $out"
}

main "$@"
