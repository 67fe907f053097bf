#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the QEMU work tree (base + patches/qemu): a minimal static
# qemu-system-x86_64 with KVM, to run inside the test VM.
set -euo pipefail
SCRIPT_NAME=qemu
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0

Configures $QEMU_TREE_DIR into QEMU_BUILD_DIR ($QEMU_BUILD_DIR): the
x86_64-softmmu target only, KVM without TCG, no default features or
devices (the pc and microvm machines and what they need stay), static,
-Werror; then builds it with ninja.  Reconfigures only when the options
below or the tree's meson files change; the build is incremental.
Result: QEMU_BUILD_DIR/qemu-system-x86_64.  Log: LOG_DIR/qemu-build.log.
USAGE
}

CONFIGURE_ARGS=(
	--target-list=x86_64-softmmu
	--without-default-features --without-default-devices
	--enable-kvm --disable-tcg --enable-fdt=system
	--disable-docs --disable-tools --static --enable-werror
)

needs_configure() {
	local stamp=$QEMU_BUILD_DIR/harness.configure
	[ -f "$QEMU_BUILD_DIR/build.ninja" ] || return 0
	[ "$(cat "$stamp" 2>/dev/null)" = "${CONFIGURE_ARGS[*]}" ] || return 0
	return 1
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	[ -f "$QEMU_TREE_DIR/configure" ] || die "$EXIT_BASE" "no QEMU work tree; run harness/tree.sh qemu apply"
	ensure_dirs
	local logfile=$LOG_DIR/qemu-build.log start
	start=$(date +%s)
	: >"$logfile"
	if needs_configure; then
		rm -rf "$QEMU_BUILD_DIR"
		mkdir -p "$QEMU_BUILD_DIR"
		(cd "$QEMU_BUILD_DIR" && run_logged "$logfile" "$QEMU_TREE_DIR/configure" "${CONFIGURE_ARGS[@]}") ||
			die "$EXIT_BUILD" "QEMU configure failed (see $logfile)"
		echo "${CONFIGURE_ARGS[*]}" >"$QEMU_BUILD_DIR/harness.configure"
	fi
	run_logged "$logfile" ninja -C "$QEMU_BUILD_DIR" -j"$JOBS" qemu-system-x86_64 ||
		die "$EXIT_BUILD" "QEMU build failed (see $logfile)"
	log "built $QEMU_BUILD_DIR/qemu-system-x86_64 ($(du -h "$QEMU_BUILD_DIR/qemu-system-x86_64" | cut -f1))"
	stage_time qemu "$start"
}

main "$@"
