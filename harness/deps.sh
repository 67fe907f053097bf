#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install the Debian packages the harness needs, if any is missing.
set -euo pipefail
SCRIPT_NAME=deps
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0 [EXTRA_PACKAGE...]

Installs (apt-get, as root) what building the base, the kernel and the
selftests and booting them under QEMU needs, plus any EXTRA_PACKAGE, from
the machine's own sources; installs none of them at a pinned version.
Does nothing when everything is installed.  Then fetches every pinned
input of harness/base.conf (harness/fetch.sh all): a pinned version that
Debian no longer serves stops here, named, with how to move the pin.
USAGE
}

PACKAGES=(
	gcc make libc6-dev flex bison bc perl libelf-dev libssl-dev
	cpio kmod rsync xz-utils git python3 ccache
	qemu-system-x86 busybox-static
	# harness/gates.sh
	gcc-multilib g++ g++-multilib
	python3-sphinx python3-sphinx-rtd-theme python3-yaml graphviz
	# harness/tree.sh qemu, harness/qemu.sh (a static QEMU), harness/e2e.sh
	dpkg-dev meson ninja-build pkg-config libglib2.0-dev libpixman-1-dev
	libfdt-dev zlib1g-dev seabios
)

missing_packages() {
	local pkg
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null |
			grep -q '^install ok installed$' || echo "$pkg"
	done
}

install_packages() {
	local missing
	mapfile -t missing < <(missing_packages "$@")
	if [ "${#missing[@]}" -eq 0 ]; then
		log "all packages installed"
		return 0
	fi
	[ "$(id -u)" -eq 0 ] || die "$EXIT_DEPS" "missing packages (${missing[*]}) and not root"
	run apt-get update -q || die "$EXIT_DEPS" "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive run apt-get install -y -q \
		--no-install-recommends "${missing[@]}" ||
		die "$EXIT_DEPS" "apt-get install ${missing[*]} failed"
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	install_packages "${PACKAGES[@]}" "$@"
	"$HARNESS_DIR/fetch.sh" all
}

main "$@"
