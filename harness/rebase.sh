#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Move the pins of harness/base.conf to the newest versions Debian serves:
# the answer when a point release removed a pinned version.
set -euo pipefail
SCRIPT_NAME=rebase
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0 [--dry-run]

Looks up the newest version of each kernel base (base.conf's LINUX_BASES)
and of each QEMU base (QEMU_BASES) that Debian serves in the
pin's suites (harness/fetch.sh's private apt configuration), derives the
ABI-named packages of the same kernel (the distro config's image and the
e2e guest's cloud image: the kernel version in their names is replaced),
downloads every file, computes the sha256 sums and rewrites BASE_CONF
($BASE_CONF) with them.  Then re-applies both series to the new bases
(harness/tree.sh [qemu] apply for each base), which fails loudly
when a patch no longer applies.  Review the diff of base.conf, run
make check, and commit.

  --dry-run  print the new pins; change nothing, apply nothing
Environment: as harness/fetch.sh; NO_APPLY=1 skips the re-apply.
USAGE
}

DRY_RUN=0

# set_pin VAR VALUE: rewrite VAR's line of BASE_CONF.
set_pin() {
	local var=$1 value=$2 old=${!1}
	if [ "$old" = "$value" ]; then
		return 0
	fi
	printf '  %-26s %s -> %s\n' "$var" "$old" "$value"
	[ "$DRY_RUN" = 1 ] && return 0
	grep -q "^$var=" "$BASE_CONF" || die "$EXIT_USAGE" "$BASE_CONF has no $var= line"
	sed -i "s|^$var=.*|$var=$value|" "$BASE_CONF"
}

# download_deb PACKAGE VERSION: fetch a .deb, print its path.
download_deb() {
	local pkg=$1 ver=$2 deb
	deb=$(compgen -G "$DL_DIR/$(deb_glob "$pkg" "$ver")" | head -n 1 || true)
	if [ -z "$deb" ]; then
		(cd "$DL_DIR" && run apt-get "${APT_OPTS[@]}" download -q "$pkg=$ver" >&2) ||
			die "$EXIT_DEPS" "Debian serves no $pkg $ver: the ABI-named package of the new base is missing; pin by hand"
		deb=$(compgen -G "$DL_DIR/$(deb_glob "$pkg" "$ver")" | head -n 1)
	fi
	echo "$deb"
}

sha_of() {
	sha256sum "$1" | awk '{print $1}'
}

# rebase_kernel GROUP: a kernel base's pins (GROUP_*, GROUP_DISTRO_*), and
# the e2e guest's if its package is of the same kernel version.
rebase_kernel() {
	local g=$1 v pkg ver suites oldv kv deb tmp member cfg_pkg cfg_member l2_pkg
	for v in PACKAGE VERSION SUITES MEMBER KERNELVERSION DISTRO_PACKAGE DISTRO_MEMBER; do
		local "$v"
		pkg=${g}_$v
		printf -v "$v" '%s' "${!pkg}"
	done
	ver=$(apt_candidate "$PACKAGE" "$SUITES")
	[ -n "$ver" ] || die "$EXIT_DEPS" "Debian serves no version of $PACKAGE in $SUITES"
	if [ "$ver" = "$VERSION" ]; then
		log "$PACKAGE: $ver is pinned already"
		return 0
	fi
	log "$PACKAGE: $VERSION -> $ver"
	oldv=$KERNELVERSION
	kv=${ver%%-*}
	cfg_pkg=${DISTRO_PACKAGE//$oldv/$kv}
	cfg_member=${DISTRO_MEMBER//$oldv/$kv}
	mkdir -p "$DL_DIR"
	tmp=$(mktemp -d "$DL_DIR/rebase.XXXXXX")
	deb=$(download_deb "$PACKAGE" "$ver")
	extract_member "$deb" "$MEMBER" "$tmp/base.tar.xz"
	set_pin "${g}_VERSION" "$ver"
	set_pin "${g}_DEB_SHA256" "$(sha_of "$deb")"
	set_pin "${g}_SHA256" "$(sha_of "$tmp/base.tar.xz")"
	set_pin "${g}_KERNELVERSION" "$kv"
	deb=$(download_deb "$cfg_pkg" "$ver")
	extract_member "$deb" "$cfg_member" "$tmp/config"
	xz -6 -T1 -c "$tmp/config" >"$tmp/config.xz"
	set_pin "${g}_DISTRO_PACKAGE" "$cfg_pkg"
	set_pin "${g}_DISTRO_VERSION" "$ver"
	set_pin "${g}_DISTRO_DEB_SHA256" "$(sha_of "$deb")"
	set_pin "${g}_DISTRO_MEMBER" "$cfg_member"
	set_pin "${g}_DISTRO_SHA256" "$(sha_of "$tmp/config.xz")"
	if [[ "$L2_PACKAGE" == *"$oldv"* ]]; then
		l2_pkg=${L2_PACKAGE//$oldv/$kv}
		deb=$(download_deb "$l2_pkg" "$ver")
		set_pin L2_PACKAGE "$l2_pkg"
		set_pin L2_VERSION "$ver"
		set_pin L2_DEB_SHA256 "$(sha_of "$deb")"
	fi
	rm -rf "$tmp"
}

# rebase_qemu GROUP: one QEMU base's pins (base.conf's GROUP_*).
rebase_qemu() {
	local g=$1 ver tmp dsc orig debian pkg cur suites
	pkg=${g}_PACKAGE cur=${g}_VERSION suites=${g}_SUITES
	pkg=${!pkg} cur=${!cur} suites=${!suites}
	ver=$(apt_candidate_source "$pkg" "$suites")
	[ -n "$ver" ] || die "$EXIT_DEPS" "Debian serves no source package $pkg in $suites"
	if [ "$ver" = "$cur" ]; then
		log "$pkg (source, $g): $ver is pinned already"
		return 0
	fi
	log "$pkg (source, $g): $cur -> $ver"
	mkdir -p "$DL_DIR"
	tmp=$(mktemp -d "$DL_DIR/rebase.XXXXXX")
	(cd "$tmp" && run apt-get "${APT_OPTS[@]}" source -q --download-only "$pkg=$ver" >&2) ||
		die "$EXIT_DEPS" "apt-get source $pkg=$ver failed"
	dsc=$(cd "$tmp" && ls -- *.dsc)
	orig=$(cd "$tmp" && ls -- *.orig.tar.*)
	debian=$(cd "$tmp" && ls -- *.debian.tar.*)
	set_pin "${g}_VERSION" "$ver"
	set_pin "${g}_DSC" "$dsc"
	set_pin "${g}_DSC_SHA256" "$(sha_of "$tmp/$dsc")"
	set_pin "${g}_ORIG" "$orig"
	set_pin "${g}_ORIG_SHA256" "$(sha_of "$tmp/$orig")"
	set_pin "${g}_DEBIAN" "$debian"
	set_pin "${g}_DEBIAN_SHA256" "$(sha_of "$tmp/$debian")"
	if [ "$DRY_RUN" = 0 ]; then
		mkdir -p "$QEMU_SRC_DIR"
		mv "$tmp"/* "$QEMU_SRC_DIR"/
	fi
	rm -rf "$tmp"
}

main() {
	case "${1:-}" in
	--dry-run) DRY_RUN=1 ;;
	-h|--help) usage; exit 0 ;;
	"") ;;
	*) usage >&2; exit "$EXIT_USAGE" ;;
	esac
	apt_update
	log "pins in $BASE_CONF that change:"
	local b
	for b in $(linux_bases); do
		rebase_kernel "$(linux_pin "$b")"
	done
	for b in $(qemu_bases); do
		rebase_qemu "$(pair_lookup "$QEMU_BASES" "$b")"
	done
	if [ "$DRY_RUN" = 1 ] || [ "${NO_APPLY:-0}" = 1 ]; then
		log "not re-applied (dry run or NO_APPLY=1)"
		return 0
	fi
	# Fetch (and so check) the new pins as make check will, then re-apply.
	"$HARNESS_DIR/fetch.sh" all
	for b in $(linux_bases); do
		LINUX_BASE=$b "$HARNESS_DIR/tree.sh" apply
	done
	for b in $(qemu_bases); do
		QEMU_BASE=$b "$HARNESS_DIR/tree.sh" qemu apply
	done
	log "both series apply to the new bases; review 'git diff $BASE_CONF', run make check, commit"
}

main "$@"
