#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Does Debian serve a newer base than the pinned one, and do the series
# still apply (and the kernel series build) on it?  Informational: a point
# release is noticed here before a user trips over it.
set -euo pipefail
SCRIPT_NAME=newer-base
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0 [lookup|kernel|qemu]

Looks up the newest version of each kernel base (base.conf's LINUX_BASES;
"kernel": only LINUX_BASE's) and of each QEMU base (QEMU_BASES; "qemu":
only QEMU_BASE's) that Debian serves in the pin's suites.  For each newer than the pin: unpacks it under
NEWER_DIR ($NEWER_DIR), applies the series with git apply in series
order and, for the kernel, configures tinyconfig + harness/config/kvm-test.config
and builds arch/x86/kvm/ (the QEMU series is only applied: building QEMU
takes minutes more).  "lookup" only looks the versions up: what make check
runs (the download, apply and build cost it minutes).  Prints one line per base; exits 0 whatever it finds
unless STRICT=1 (then 1 when a newer base exists and the series fails on it).
'make rebase' moves the pins.
USAGE
}

NEWER_DIR=${NEWER_DIR:-$BUILD_DIR/newer}
NEWER_TRY=${NEWER_TRY:-1}
RESULTS=()
BAD=0

# apply_series_to DIR PATCH_DIR: git apply every patch of the series; print
# the first that does not apply.
apply_series_to() {
	local dir=$1 pdir=$2 name
	while read -r name; do
		case "$name" in ''|'#'*) continue ;; esac
		git -C "$dir" apply --whitespace=nowarn "$pdir/$name" 2>"$NEWER_DIR/apply.err" ||
			{ echo "$name"; return 1; }
	done <"$pdir/series"
}

newer_kernel() {
	local ver deb dir=$NEWER_DIR/linux out=$NEWER_DIR/kbuild failed logf=$NEWER_DIR/linux.log
	ver=$(apt_candidate "$BASE_PACKAGE" "$BASE_SUITES")
	if [ -z "$ver" ] || ! dpkg --compare-versions "$ver" gt "$BASE_VERSION"; then
		RESULTS+=("$BASE_PACKAGE: pinned $BASE_VERSION is the newest Debian serves")
		return 0
	fi
	log "$BASE_PACKAGE $ver is newer than the pinned $BASE_VERSION"
	if [ "$NEWER_TRY" = 0 ]; then
		RESULTS+=("$BASE_PACKAGE $ver (newer than the pin $BASE_VERSION): not tried here; 'make newer-base' applies and builds the series on it, 'make rebase' moves the pins")
		return 0
	fi
	mkdir -p "$NEWER_DIR"
	deb=$(cd "$DL_DIR" && compgen -G "$(deb_glob "$BASE_PACKAGE" "$ver")" | head -n 1 || true)
	if [ -z "$deb" ]; then
		(cd "$DL_DIR" && run apt-get "${APT_OPTS[@]}" download -q "$BASE_PACKAGE=$ver" >&2) ||
			{ RESULTS+=("$BASE_PACKAGE $ver (newer than the pin): download failed"); BAD=1; return 0; }
		deb=$(cd "$DL_DIR" && compgen -G "$(deb_glob "$BASE_PACKAGE" "$ver")" | head -n 1)
	fi
	if [ "$(cat "$dir/.harness-newer" 2>/dev/null)" != "$ver" ]; then
		rm -rf "$dir" "$out"
		mkdir -p "$dir"
		dpkg-deb --fsys-tarfile "$DL_DIR/$deb" | tar -xO -f - "./$BASE_MEMBER" |
			tar -xJf - -C "$dir" --strip-components=1
		git -C "$dir" init -q
		if failed=$(apply_series_to "$dir" "$PATCH_DIR"); then
			echo "$ver" >"$dir/.harness-newer"
		else
			RESULTS+=("$BASE_PACKAGE $ver (newer than the pin $BASE_VERSION): $(basename "$PATCH_DIR") does not apply: $failed ($(head -n 1 "$NEWER_DIR/apply.err"))")
			rm -rf "$dir"
			BAD=1
			return 0
		fi
	fi
	: >"$logf"
	local fragments
	mapfile -t fragments < <(kvm_test_fragments)
	make_config "$dir" "$out" x86_64 "$logf" "${fragments[@]}"
	if run_logged "$logf" make -C "$dir" O="$out" ARCH=x86_64 -j"$JOBS" W=1 arch/x86/kvm/; then
		RESULTS+=("$BASE_PACKAGE $ver (newer than the pin $BASE_VERSION): $(basename "$PATCH_DIR") applies ($(grep -c . "$PATCH_DIR/series") patches) and arch/x86/kvm/ builds with W=1; 'make rebase' moves the pins")
	else
		RESULTS+=("$BASE_PACKAGE $ver (newer than the pin $BASE_VERSION): $(basename "$PATCH_DIR") applies, but arch/x86/kvm/ does not build (see $logf)")
		BAD=1
	fi
}

newer_qemu() {
	local ver dir=$NEWER_DIR/qemu-$QEMU_BASE src=$NEWER_DIR/qemu-src failed dsc
	ver=$(apt_candidate_source "$QEMU_BASE_PACKAGE" "$QEMU_BASE_SUITES")
	if [ -z "$ver" ] || ! dpkg --compare-versions "$ver" gt "$QEMU_BASE_VERSION"; then
		RESULTS+=("$QEMU_BASE_PACKAGE (source): pinned $QEMU_BASE_VERSION is the newest Debian serves")
		return 0
	fi
	log "$QEMU_BASE_PACKAGE (source) $ver is newer than the pinned $QEMU_BASE_VERSION"
	if [ "$NEWER_TRY" = 0 ]; then
		RESULTS+=("$QEMU_BASE_PACKAGE $ver (newer than the pin $QEMU_BASE_VERSION): not tried here; 'make newer-base' applies the series to it, 'make rebase' moves the pins")
		return 0
	fi
	mkdir -p "$src"
	if [ "$(cat "$dir/.harness-newer" 2>/dev/null)" != "$ver" ]; then
		(cd "$src" && run apt-get "${APT_OPTS[@]}" source -q --download-only "$QEMU_BASE_PACKAGE=$ver" >&2) ||
			{ RESULTS+=("$QEMU_BASE_PACKAGE $ver (newer than the pin): download failed"); BAD=1; return 0; }
		dsc=$(cd "$src" && ls -- *"${ver#*:}".dsc)
		rm -rf "$dir"
		run dpkg-source --no-check -x "$src/$dsc" "$dir" >&2
		git -C "$dir" init -q
		if ! failed=$(apply_series_to "$dir" "$QEMU_PATCH_DIR"); then
			RESULTS+=("$QEMU_BASE_PACKAGE $ver (newer than the pin $QEMU_BASE_VERSION): $(basename "$QEMU_PATCH_DIR") does not apply: $failed")
			rm -rf "$dir"
			BAD=1
			return 0
		fi
		echo "$ver" >"$dir/.harness-newer"
	fi
	RESULTS+=("$QEMU_BASE_PACKAGE $ver (newer than the pin $QEMU_BASE_VERSION): $(basename "$QEMU_PATCH_DIR") applies (not built here); 'make rebase' moves the pins")
}

main() {
	local b r status=0
	case "${1:-}" in
	-h|--help) usage; exit 0 ;;
	kernel) ensure_dirs; newer_kernel ;;
	qemu) ensure_dirs; newer_qemu ;;
	""|lookup)
		[ "${1:-}" = lookup ] && export NEWER_TRY=0
		ensure_dirs
		apt_update
		for b in $(linux_bases); do
			LINUX_BASE=$b "$0" kernel || status=1
		done
		for b in $(qemu_bases); do
			QEMU_BASE=$b "$0" qemu || status=1
		done
		;;
	*) usage >&2; exit "$EXIT_USAGE" ;;
	esac
	for r in "${RESULTS[@]}"; do
		echo "newer base: $r"
	done
	[ "$BAD" = 1 ] && status=1
	[ "${STRICT:-0}" = 1 ] && return "$status"
	return 0
}

main "$@"
