# SPDX-License-Identifier: GPL-2.0
# The pinned inputs of harness/base.conf: fetch, check, explain.  Sourced by
# lib.sh; harness/fetch.sh is its command line.
#
# A pin NAME is a group of variables in base.conf: NAME_PACKAGE,
# NAME_VERSION and NAME_DEB_SHA256 (the .deb as the archive serves it),
# and for a file taken out of the .deb, NAME_MEMBER and its own sha256.
# Every download runs apt on a private configuration under APT_DIR, with
# its own sources list, lists and cache: the machine's sources stay as they
# are, and a suite the machine does not use can be added here alone.

DL_DIR=${DL_DIR:-$TOP_BUILD_DIR/dl}
APT_DIR=${APT_DIR:-$TOP_BUILD_DIR/apt}
APT_MAX_AGE=${APT_MAX_AGE:-21600}
APT_MIRROR=${APT_MIRROR:-http://deb.debian.org}
APT_KEYRING=${APT_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
# The suites the pins come from: "URI-path suite" pairs.  Each pin's
# NAME_SUITES says which of them count when looking for a newer version.
APT_SUITES=${APT_SUITES:-"debian bookworm
debian bookworm-updates
debian-security bookworm-security
debian trixie
debian trixie-backports
debian sid"}
# Where the extracted inputs go: derived from the pins, never from the host.
BASE_TARBALL=${BASE_TARBALL:-$DL_DIR/$(basename "$BASE_MEMBER")}
DISTRO_CONFIG=${DISTRO_CONFIG:-$DL_DIR/config-$BASE_KERNELVERSION.amd64_none_amd64.xz}
QEMU_SRC_DIR=${QEMU_SRC_DIR:-$DL_DIR/qemu-src}

APT_OPTS=(
	-o "Dir::Etc::SourceList=$APT_DIR/sources.list"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$APT_DIR/lists"
	-o "Dir::Cache=$APT_DIR/cache"
	# apt's binary caches of the lists, in the private cache directory:
	# Debian's docker images turn them off (docker-clean), and then every
	# apt call parses the lists again (about 3 s of CPU each).  apt
	# rebuilds them itself when the lists change.
	-o "Dir::Cache::pkgcache=pkgcache.bin"
	-o "Dir::Cache::srcpkgcache=srcpkgcache.bin"
	-o "APT::Sandbox::User=root"
	-o "Acquire::Retries=3"
)

apt_private() {
	local cmd=$1
	shift
	"$cmd" "${APT_OPTS[@]}" "$@"
}

apt_write_sources() {
	local line path suite
	mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
	{
		echo "# Written by harness/pins.sh: the harness's own apt sources."
		while read -r path suite; do
			[ -n "$path" ] || continue
			for line in deb deb-src; do
				echo "$line [signed-by=$APT_KEYRING] $APT_MIRROR/$path $suite main"
			done
		done <<<"$APT_SUITES"
	} >"$APT_DIR/sources.list.new"
	if ! cmp -s "$APT_DIR/sources.list.new" "$APT_DIR/sources.list" 2>/dev/null; then
		mv "$APT_DIR/sources.list.new" "$APT_DIR/sources.list"
		rm -f "$APT_DIR/.updated"
	else
		rm -f "$APT_DIR/sources.list.new"
	fi
}

# apt_update: refresh the private lists.
apt_update() {
	apt_write_sources
	run apt-get "${APT_OPTS[@]}" update -q >&2 ||
		die "$EXIT_DEPS" "apt-get update of the harness's sources ($APT_DIR/sources.list) failed"
	touch "$APT_DIR/.updated"
}

# apt_fresh: refresh the private lists when missing or older than APT_MAX_AGE.
apt_fresh() {
	apt_write_sources
	local stamp=$APT_DIR/.updated
	if [ ! -f "$stamp" ] || [ $(($(date +%s) - $(stat -c %Y "$stamp"))) -gt "$APT_MAX_AGE" ]; then
		apt_update
	fi
}

# madison_versions TYPE PACKAGE [SUITES]: the versions apt-cache madison
# lists for PACKAGE in index TYPE (Packages or Sources), in SUITES (a
# space-separated list) if given.
madison_versions() {
	apt_private apt-cache madison "$2" 2>/dev/null |
		awk -F'|' -v type="$1" -v suites=" ${3:-} " '$3 ~ type {
			split($3, w, " "); suite = w[2]; sub(/\/.*/, "", suite)
			if (suites != "  " && index(suites, " " suite " ") == 0) next
			gsub(/ /, "", $2); print $2 }' | sort -u -V
}

# apt_versions PACKAGE [SUITES]: every version of a binary package served.
apt_versions() {
	madison_versions Packages "$@"
}

# apt_source_versions PACKAGE [SUITES]: the same for a source package.
apt_source_versions() {
	madison_versions Sources "$@"
}

# newest VERSION...: the highest by dpkg's ordering.
newest() {
	local v best=""
	for v in "$@"; do
		if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then
			best=$v
		fi
	done
	echo "$best"
}

# apt_candidate PACKAGE [SUITES]: the newest version served.
apt_candidate() {
	apt_fresh
	# shellcheck disable=SC2046
	newest $(apt_versions "$1" "${2:-}")
}

apt_candidate_source() {
	apt_fresh
	# shellcheck disable=SC2046
	newest $(apt_source_versions "$1" "${2:-}")
}

# pin_gone NAME PACKAGE VERSION FILE WHY: a pinned input cannot be had.
pin_gone() {
	local name=$1 pkg=$2 ver=$3 file=$4 why=$5 served
	local dsc=${name}_DSC
	if [ -n "${!dsc-}" ]; then
		served=$(apt_source_versions "$pkg" | tr '\n' ' ')
	else
		served=$(apt_versions "$pkg" | tr '\n' ' ')
	fi
	if [[ " $served " == *" $ver "* ]]; then
		die "$EXIT_DEPS" "$pkg $ver ($file): the archive lists it but the download failed; a network or mirror problem, try again"
	fi
	log "error: pinned input missing: $why"
	log "  package: $pkg"
	log "  version: $ver (harness/base.conf ${name}_VERSION)"
	log "  file:    $file"
	log "  Debian's archive serves: ${served:-no version of $pkg}"
	if [ "$name" = SPARSE ]; then
		log "  To move the pin: set SPARSE_VERSION, SPARSE_DSC, SPARSE_ORIG and SPARSE_DEBIAN"
		log "  in harness/base.conf to a served version and the sha256 sums of the files"
		log "  'harness/fetch.sh sparse-source' then names; run 'make gates' and commit."
	else
		log "  To move the pin: 'make rebase' looks up the newest versions, rewrites"
		log "  harness/base.conf with them and their sha256 sums, and re-applies every"
		log "  series; review its diff, run 'make check' and commit harness/base.conf."
	fi
	exit "$EXIT_DEPS"
}

# check_sha256 FILE SHA256: whether FILE is there with that sha256.
check_sha256() {
	[ -f "$1" ] && [ "$(sha256sum "$1" | awk '{print $1}')" = "$2" ]
}

# sha_mismatch NAME FILE WANT: a fetched file is not the pinned one.
sha_mismatch() {
	local name=$1 file=$2 want=$3
	log "error: $file has sha256 $(sha256sum "$file" | awk '{print $1}'),"
	log "  harness/base.conf records $want (${name}): the archive served other bytes"
	log "  for a pinned version.  Nothing is used; remove the file to fetch it again."
	exit "$EXIT_DEPS"
}

# deb_file PACKAGE VERSION: the name apt-get download gives the .deb.
deb_glob() {
	echo "${1}_${2//:/%3a}_*.deb"
}

# fetch_pinned_deb NAME: download NAME_PACKAGE=NAME_VERSION once, check
# NAME_DEB_SHA256, print the .deb's path.
fetch_pinned_deb() {
	local name=$1 pkg ver want deb
	pkg=${name}_PACKAGE ver=${name}_VERSION want=${name}_DEB_SHA256
	pkg=${!pkg} ver=${!ver} want=${!want}
	mkdir -p "$DL_DIR"
	deb=$(compgen -G "$DL_DIR/$(deb_glob "$pkg" "$ver")" | head -n 1 || true)
	if [ -z "$deb" ]; then
		apt_fresh
		if ! (cd "$DL_DIR" && run apt-get "${APT_OPTS[@]}" download -q "$pkg=$ver" >&2); then
			# The lists may be older than the archive: once more, fresh.
			apt_update
			(cd "$DL_DIR" && run apt-get "${APT_OPTS[@]}" download -q "$pkg=$ver" >&2) ||
				pin_gone "$name" "$pkg" "$ver" "$(deb_glob "$pkg" "$ver" | sed 's/\*/amd64 or all/')" \
					"Debian's archive no longer serves $pkg $ver"
		fi
		deb=$(compgen -G "$DL_DIR/$(deb_glob "$pkg" "$ver")" | head -n 1 || true)
		[ -n "$deb" ] || die "$EXIT_DEPS" "apt-get download $pkg=$ver left no $(deb_glob "$pkg" "$ver") in $DL_DIR"
	fi
	check_sha256 "$deb" "$want" || sha_mismatch "${name}_DEB_SHA256" "$deb" "$want"
	echo "$deb"
}

# extract_member DEB MEMBER OUT: one file of a .deb, without installing it.
extract_member() {
	local deb=$1 member=$2 out=$3
	dpkg-deb --fsys-tarfile "$deb" | tar -xO -f - "./$member" >"$out.tmp" ||
		die "$EXIT_DEPS" "$deb holds no /$member"
	mv "$out.tmp" "$out"
}

# fetch_base_tarball: the selected kernel base's tarball, checked by its
# pinned sha256.
fetch_base_tarball() {
	check_sha256 "$BASE_TARBALL" "$BASE_SHA256" && return 0
	local deb
	deb=$(fetch_pinned_deb "$LINUX_PIN")
	log "extracting /$BASE_MEMBER from $(basename "$deb")"
	extract_member "$deb" "$BASE_MEMBER" "$BASE_TARBALL"
	check_sha256 "$BASE_TARBALL" "$BASE_SHA256" ||
		sha_mismatch "${LINUX_PIN}_SHA256" "$BASE_TARBALL" "$BASE_SHA256"
	log "base ($LINUX_BASE): $BASE_TARBALL ($BASE_PACKAGE $BASE_VERSION), sha256 checked"
}

# fetch_distro_config: the distribution's production config, taken from the
# ABI-named kernel image package (which a point release does not remove)
# and compressed with xz -6 as Debian's linux-config packages ship it.
fetch_distro_config() {
	check_sha256 "$DISTRO_CONFIG" "$DISTRO_CONFIG_SHA256" && return 0
	local deb
	deb=$(fetch_pinned_deb "${LINUX_PIN}_DISTRO")
	log "extracting /$DISTRO_CONFIG_MEMBER from $(basename "$deb")"
	extract_member "$deb" "$DISTRO_CONFIG_MEMBER" "$DISTRO_CONFIG.plain"
	xz -6 -T1 -c "$DISTRO_CONFIG.plain" >"$DISTRO_CONFIG.tmp"
	mv "$DISTRO_CONFIG.tmp" "$DISTRO_CONFIG"
	rm -f "$DISTRO_CONFIG.plain"
	check_sha256 "$DISTRO_CONFIG" "$DISTRO_CONFIG_SHA256" ||
		sha_mismatch "${LINUX_PIN}_DISTRO_SHA256" "$DISTRO_CONFIG" "$DISTRO_CONFIG_SHA256"
	log "distro config ($LINUX_BASE): $DISTRO_CONFIG ($DISTRO_CONFIG_PACKAGE $DISTRO_CONFIG_VERSION), sha256 checked"
}

# fetch_source NAME DIR: the source package NAME_PACKAGE=NAME_VERSION's
# three files (NAME_DSC, NAME_ORIG, NAME_DEBIAN) in DIR, each checked
# against its NAME_*_SHA256.
fetch_source() {
	local name=$1 dir=$2 pkg ver dsc
	source_ok "$name" "$dir" && return 0
	pkg=${name}_PACKAGE ver=${name}_VERSION dsc=${name}_DSC
	pkg=${!pkg} ver=${!ver} dsc=${!dsc}
	mkdir -p "$dir"
	apt_fresh
	if ! (cd "$dir" && run apt-get "${APT_OPTS[@]}" source -q --download-only "$pkg=$ver" >&2); then
		apt_update
		(cd "$dir" && run apt-get "${APT_OPTS[@]}" source -q --download-only "$pkg=$ver" >&2) ||
			pin_gone "$name" "$pkg" "$ver" "$dsc" \
				"Debian's archive no longer serves the source package $pkg $ver"
	fi
	local f want
	for f in DSC ORIG DEBIAN; do
		want=${name}_${f}_SHA256 f=${name}_$f
		check_sha256 "$dir/${!f}" "${!want}" ||
			sha_mismatch "$want" "$dir/${!f}" "${!want}"
	done
	log "$pkg source: $dir/$dsc ($ver), sha256 checked"
}

# source_ok NAME DIR: whether DIR holds NAME's three files, checked.
source_ok() {
	local f want
	for f in DSC ORIG DEBIAN; do
		want=${1}_${f}_SHA256 f=${1}_$f
		check_sha256 "$2/${!f}" "${!want}" || return 1
	done
}

# fetch_qemu_source: the selected QEMU base's source package.
fetch_qemu_source() {
	fetch_source "$QEMU_PIN" "$QEMU_SRC_DIR"
}

qemu_source_ok() {
	source_ok "$QEMU_PIN" "$QEMU_SRC_DIR"
}

# meson_dir: the bin and Python directories of the QEMU base's meson
# (base.conf's QEMU*_MESON names its pin), unpacked once from its .deb
# into TOP_BUILD_DIR/tools; nothing when the base builds with the
# machine's meson.
meson_dir() {
	[ -n "$QEMU_BASE_MESON" ] || return 0
	local ver=${QEMU_BASE_MESON}_VERSION deb dir
	dir=$TOP_BUILD_DIR/tools/meson-${!ver}
	if [ ! -x "$dir/usr/bin/meson" ]; then
		deb=$(fetch_pinned_deb "$QEMU_BASE_MESON")
		rm -rf "$dir"
		mkdir -p "$dir"
		run dpkg -x "$deb" "$dir" >&2 || die "$EXIT_DEPS" "dpkg -x $deb failed"
	fi
	echo "$dir"
}

# sparse_bin: the path of the pinned sparse (base.conf's SPARSE), built
# from its Debian source package once into TOP_BUILD_DIR/tools, with this
# machine's gcc (Debian's packaging names sid's gcc-16; sparse takes its
# system include directories from the compiler it is built with).
sparse_bin() {
	local dir=$TOP_BUILD_DIR/tools/sparse-$SPARSE_VERSION
	if [ ! -x "$dir/sparse" ]; then
		fetch_source SPARSE "$DL_DIR/sparse-src"
		rm -rf "$dir"
		mkdir -p "$TOP_BUILD_DIR/tools"
		run dpkg-source --no-check -x "$DL_DIR/sparse-src/$SPARSE_DSC" "$dir" >&2 ||
			die "$EXIT_DEPS" "dpkg-source -x $SPARSE_DSC failed"
		run_logged "$TOP_BUILD_DIR/tools/sparse-build.log" make -C "$dir" -j"$JOBS" CC=gcc sparse ||
			die "$EXIT_DEPS" "building sparse $SPARSE_VERSION failed (see $TOP_BUILD_DIR/tools/sparse-build.log)"
	fi
	echo "$dir/sparse"
}

# fetch_kernel: the selected kernel base's pins.
fetch_kernel() {
	fetch_base_tarball
	fetch_distro_config
}

fetch_all() {
	local b
	for b in $(linux_bases); do
		LINUX_BASE=$b "$HARNESS_DIR/fetch.sh" kernel
	done
	fetch_pinned_deb L2 >/dev/null
	for b in $(qemu_bases); do
		QEMU_BASE=$b "$HARNESS_DIR/fetch.sh" qemu-source
	done
	fetch_pinned_deb MESON >/dev/null
	fetch_source SPARSE "$DL_DIR/sparse-src"
	log "pinned inputs: all present, sha256 checked ($DL_DIR)"
}
