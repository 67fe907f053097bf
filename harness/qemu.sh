#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the QEMU work tree (base + patches/qemu): a minimal static
# qemu-system-x86_64 with KVM, to run inside the test VM.
set -euo pipefail
SCRIPT_NAME=qemu
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0 [stock]

Configures QEMU_TREE_DIR ($QEMU_TREE_DIR, QEMU_BASE $QEMU_BASE) into
QEMU_BUILD_DIR ($QEMU_BUILD_DIR): the x86_64-softmmu target only, KVM
without TCG, no default features or devices (the pc and microvm machines
and what they need stay; harness/qemu/x86_64-devices-QEMU_BASE.mak adds
devices where the base needs them), static, -Werror; then builds it with
ninja.  A base pinned with a meson (base.conf's QEMU*_MESON) configures
with that meson, unpacked from its .deb.  Reconfigures only when the
options change; the build is incremental.
Result: QEMU_BUILD_DIR/qemu-system-x86_64.  Log: LOG_DIR/qemu-build.log.

  stock  the same build of the unpatched base (the work tree's "base" tag,
         checked out in QEMU_STOCK_TREE_DIR, $QEMU_STOCK_TREE_DIR) into
         QEMU_STOCK_BUILD_DIR ($QEMU_STOCK_BUILD_DIR): the end-to-end
         test's stock QEMU.  Log: LOG_DIR/qemu-stock-build.log.
USAGE
}

DEVICES=$HARNESS_DIR/qemu/x86_64-devices-$QEMU_BASE.mak

CONFIGURE_ARGS=(
	--target-list=x86_64-softmmu
	--without-default-features --without-default-devices
	--enable-kvm --disable-tcg --enable-fdt=system
	--disable-docs --disable-tools --static --enable-werror
)
if [ -f "$DEVICES" ]; then
	# configure takes a devices file by name, from the source tree
	CONFIGURE_ARGS+=(--with-devices-x86_64=harness --disable-install-blobs)
fi

# install_devices TREE: the devices file as configure wants it, kept out
# of git's view (.git/info/exclude), so the tree still matches the series.
install_devices() {
	local tree=$1 exclude
	[ -f "$DEVICES" ] || return 0
	cp "$DEVICES" "$tree/configs/devices/x86_64-softmmu/harness.mak"
	exclude=$(git -C "$tree" rev-parse --git-path info/exclude)
	case $exclude in /*) ;; *) exclude=$tree/$exclude ;; esac
	mkdir -p "$(dirname "$exclude")"
	grep -qx '/configs/devices/x86_64-softmmu/harness.mak' "$exclude" 2>/dev/null ||
		echo '/configs/devices/x86_64-softmmu/harness.mak' >>"$exclude"
}

# configure_id TREE: what a build directory was configured from.
configure_id() {
	echo "$1 ${CONFIGURE_ARGS[*]} $(cat "$DEVICES" 2>/dev/null | md5sum)"
}

# needs_configure TREE BUILD
needs_configure() {
	[ -f "$2/build.ninja" ] || return 0
	[ "$(cat "$2/harness.configure" 2>/dev/null)" = "$(configure_id "$1")" ] || return 0
	return 1
}

# build TREE BUILD LOGFILE
build() {
	local tree=$1 build=$2 logfile=$3 meson
	: >"$logfile"
	install_devices "$tree"
	meson=$(meson_dir)
	if needs_configure "$tree" "$build"; then
		rm -rf "$build"
		mkdir -p "$build"
		if [ -n "$meson" ]; then
			# Debian's meson is Python for Debian's python3, not the
			# machine's default python3
			(cd "$build" && PATH=$meson/usr/bin:$PATH \
				PYTHONPATH=$meson/usr/lib/python3/dist-packages \
				run_logged "$logfile" "$tree/configure" --python=/usr/bin/python3 \
				"${CONFIGURE_ARGS[@]}") ||
				die "$EXIT_BUILD" "QEMU configure failed (see $logfile)"
		else
			(cd "$build" && run_logged "$logfile" "$tree/configure" "${CONFIGURE_ARGS[@]}") ||
				die "$EXIT_BUILD" "QEMU configure failed (see $logfile)"
		fi
		configure_id "$tree" >"$build/harness.configure"
	fi
	# what the binary is built from, for harness/e2e.sh's NO_BUILD=1
	local state
	state=$(tree_state "$tree")
	rm -f "$build/harness.built-from"
	PATH=${meson:+$meson/usr/bin:}$PATH PYTHONPATH=${meson:+$meson/usr/lib/python3/dist-packages} \
		run_logged "$logfile" ninja -C "$build" -j"$JOBS" qemu-system-x86_64 ||
		die "$EXIT_BUILD" "QEMU build failed (see $logfile)"
	echo "$state" >"$build/harness.built-from"
	log "built $build/qemu-system-x86_64 ($(du -h "$build/qemu-system-x86_64" | cut -f1))"
}

# stock_tree: QEMU_STOCK_TREE_DIR, a worktree of the work tree at "base".
stock_tree() {
	git_worktree "$QEMU_TREE_DIR" "$QEMU_STOCK_TREE_DIR" base
	git -C "$QEMU_STOCK_TREE_DIR" checkout -q --detach -f base
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	[ -f "$QEMU_TREE_DIR/configure" ] || die "$EXIT_BASE" "no QEMU work tree; run harness/tree.sh qemu apply"
	ensure_dirs
	local start
	start=$(date +%s)
	case "${1:-}" in
	"")
		build "$QEMU_TREE_DIR" "$QEMU_BUILD_DIR" "$LOG_DIR/qemu-build.log"
		stage_time qemu "$start"
		;;
	stock)
		stock_tree
		build "$QEMU_STOCK_TREE_DIR" "$QEMU_STOCK_BUILD_DIR" "$LOG_DIR/qemu-stock-build.log"
		stage_time qemu-stock "$start"
		;;
	*) usage >&2; exit "$EXIT_USAGE" ;;
	esac
}

main "$@"
