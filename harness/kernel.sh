#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Configure and build the test kernel (bzImage + KVM modules) out of tree.
set -euo pipefail
SCRIPT_NAME=kernel
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0 [FRAGMENT...]

Builds $TREE_DIR into KBUILD_DIR ($KBUILD_DIR): tinyconfig, then the
config fragments merged on top (default: harness/config/kvm-test.config
and kvm-test-MAJOR.MINOR.config of the base, if any),
then olddefconfig; fails if a requested option did not land.  The config
is regenerated only when a fragment or the tree's Kconfig files change;
the build itself is incremental.  Log: LOG_DIR/build.log.
USAGE
}

mapfile -t DEFAULT_FRAGMENTS < <(kvm_test_fragments)

build_kernel() {
	run_logged "$LOG_DIR/build.log" make -C "$TREE_DIR" O="$KBUILD_DIR" ARCH=x86_64 \
		-j"$JOBS" bzImage modules ||
		die "$EXIT_BUILD" "kernel build failed (see $LOG_DIR/build.log)"
	log "built $KBUILD_DIR/arch/x86/boot/bzImage"
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local start fragments=("$@")
	[ "${#fragments[@]}" -gt 0 ] || fragments=("${DEFAULT_FRAGMENTS[@]}")
	start=$(date +%s)
	ensure_dirs
	: >"$LOG_DIR/build.log"
	[ -d "$TREE_DIR/.git" ] || die "$EXIT_BASE" "no work tree at $TREE_DIR (run harness/tree.sh apply)"
	make_config "$TREE_DIR" "$KBUILD_DIR" x86_64 "$LOG_DIR/build.log" "${fragments[@]}"
	build_kernel
	stage_time kernel "$start"
}

main "$@"
