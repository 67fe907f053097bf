#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The pinned inputs of harness/base.conf, fetched from Debian's archive in a
# form that survives its point releases, and checked by sha256.
#
# Nothing pinned is installed with apt-get install PACKAGE=VERSION: a point
# release can drop that version.  Each pinned .deb is downloaded with
# apt-get download and unpacked with dpkg-deb; the QEMU source package with
# apt-get source --download-only.  apt runs on a private configuration
# (BUILD_DIR/apt: its own sources list, lists and cache), so the machine's
# sources are never touched.
set -euo pipefail
SCRIPT_NAME=${SCRIPT_NAME:-fetch}
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0 all | kernel | base | distro-config | l2 | qemu-source | meson | sparse-source | update
       $0 candidate PACKAGE [SUITES] | candidate-source PACKAGE [SUITES]

  all            every pinned input below, for every kernel base
                 ($(linux_bases | tr '\n' ' ')) and QEMU base ($(qemu_bases | tr '\n' ' '))
  kernel         base and distro-config of LINUX_BASE ($LINUX_BASE)
  base           $BASE_PACKAGE $BASE_VERSION: its $(basename "$BASE_TARBALL")
  distro-config  $DISTRO_CONFIG_PACKAGE $DISTRO_CONFIG_VERSION:
                 /$DISTRO_CONFIG_MEMBER as $(basename "$DISTRO_CONFIG") (xz -6)
  l2             $L2_PACKAGE $L2_VERSION (the e2e guest kernel)
  qemu-source    QEMU_BASE's ($QEMU_BASE) $QEMU_BASE_PACKAGE $QEMU_BASE_VERSION (.dsc, orig, debian)
  meson          $MESON_PACKAGE $MESON_VERSION (QEMU 10.2's meson; the .deb, not installed)
  sparse-source  $SPARSE_PACKAGE $SPARSE_VERSION (.dsc, orig, debian; the sparse gate's)
  update         refresh the private apt lists
  candidate      the newest version of a binary package the archive serves
  candidate-source  the same for a source package

Files go to DL_DIR ($DL_DIR).  A file whose sha256 is not the one in
harness/base.conf is refused.  A pinned version the archive no longer serves
stops with exit $EXIT_DEPS and a message that names the package, the version
and the file, and how to move the pin (make rebase).
Environment: BASE_CONF (default harness/base.conf), BUILD_DIR, DL_DIR,
APT_DIR (default BUILD_DIR/apt), APT_MAX_AGE (seconds before the private
lists are refreshed, default $APT_MAX_AGE).
USAGE
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	main() {
		case "${1:-}" in
		all) fetch_all ;;
		kernel) fetch_kernel ;;
		base) fetch_base_tarball ;;
		distro-config) fetch_distro_config ;;
		l2) fetch_pinned_deb L2 >/dev/null ;;
		qemu-source) fetch_qemu_source ;;
		meson) fetch_pinned_deb MESON >/dev/null ;;
		sparse-source) fetch_source SPARSE "$DL_DIR/sparse-src" ;;
		update) apt_update ;;
		candidate) [ $# -ge 2 ] || { usage >&2; exit "$EXIT_USAGE"; }; apt_candidate "$2" "${3:-}" ;;
		candidate-source) [ $# -ge 2 ] || { usage >&2; exit "$EXIT_USAGE"; }; apt_candidate_source "$2" "${3:-}" ;;
		-h|--help) usage ;;
		*) usage >&2; exit "$EXIT_USAGE" ;;
		esac
	}
	main "$@"
fi
