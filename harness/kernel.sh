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
config fragments merged on top (default: harness/config/kvm-test.config),
then olddefconfig; fails if a requested option did not land.  The config
is regenerated only when a fragment or the tree's Kconfig files change;
the build itself is incremental.  Log: LOG_DIR/build.log.
USAGE
}

DEFAULT_FRAGMENTS=("$HARNESS_DIR/config/kvm-test.config")

# Each CONFIG_X=v or "# CONFIG_X is not set" line of the fragments must hold.
verify_config() {
	local config=$1
	shift
	local frag line opt bad=0
	for frag in "$@"; do
		while IFS= read -r line; do
			case "$line" in
			CONFIG_*=*)
				grep -qxF -- "$line" "$config" || {
					log "requested '$line' ($(basename "$frag")) but .config has '$(grep -E "^(# )?${line%%=*}[= ]" "$config" || echo "${line%%=*} absent")'"
					bad=1
				}
				;;
			"# CONFIG_"*" is not set")
				opt=${line#\# }
				opt=${opt%% *}
				if grep -qE "^$opt=" "$config"; then
					log "requested '$line' but .config has '$(grep -E "^$opt=" "$config")'"
					bad=1
				fi
				;;
			esac
		done <"$frag"
	done
	return "$bad"
}

config_stamp() {
	{
		cat "$@"
		git -C "$TREE_DIR" rev-parse HEAD:arch/x86/kvm/Kconfig 2>/dev/null || true
		echo "$BASE_SHA256"
	} | sha256sum | awk '{print $1}'
}

make_config() {
	local stamp_file=$KBUILD_DIR/.harness-config-stamp stamp
	stamp=$(config_stamp "$@")
	if [ -f "$KBUILD_DIR/.config" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
		log "config unchanged"
		return 0
	fi
	mkdir -p "$KBUILD_DIR"
	run_logged "$LOG_DIR/build.log" make -C "$TREE_DIR" O="$KBUILD_DIR" ARCH=x86_64 tinyconfig ||
		die "$EXIT_CONFIG" "tinyconfig failed"
	run_logged "$LOG_DIR/build.log" env -C "$KBUILD_DIR" \
		"$TREE_DIR/scripts/kconfig/merge_config.sh" -m -O "$KBUILD_DIR" "$KBUILD_DIR/.config" "$@" ||
		die "$EXIT_CONFIG" "merge_config.sh failed"
	run_logged "$LOG_DIR/build.log" make -C "$TREE_DIR" O="$KBUILD_DIR" ARCH=x86_64 olddefconfig ||
		die "$EXIT_CONFIG" "olddefconfig failed"
	verify_config "$KBUILD_DIR/.config" "$@" ||
		die "$EXIT_CONFIG" "config fragment options missing from $KBUILD_DIR/.config"
	echo "$stamp" >"$stamp_file"
	log "config ok ($(grep -c '=[ym]$' "$KBUILD_DIR/.config") options on)"
}

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
	make_config "${fragments[@]}"
	build_kernel
	stage_time kernel "$start"
}

main "$@"
