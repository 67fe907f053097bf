# SPDX-License-Identifier: GPL-2.0
# Shared helpers for the harness scripts.  Source it; do not run it.
#
# Every path the harness writes is below BUILD_DIR.  Exit status tells the
# stage that failed (see README.md, "Exit status").

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP_DIR=$(dirname "$HARNESS_DIR")

# The pins (BASE_CONF: another file, for the harness's own self-tests).
BASE_CONF=${BASE_CONF:-$HARNESS_DIR/base.conf}
# shellcheck source=base.conf
. "$BASE_CONF"

# The kernel series and its base: LINUX_BASE names one of base.conf's
# LINUX_BASES.  "mainline" is patches/linux on the newest base; a backport
# X is patches/linux-X on its own base, built and tested in its own
# BUILD_DIR (TOP_BUILD_DIR/backport-X), so that nothing of the two mixes.
# The fetched pins (DL_DIR, APT_DIR) are shared.
LINUX_BASE=${LINUX_BASE:-mainline}
TOP_BUILD_DIR=${TOP_BUILD_DIR:-${BUILD_DIR:-$TOP_DIR/build}}
export LINUX_BASE TOP_BUILD_DIR

# pair_lookup LIST NAME: the value of NAME in a "NAME=VALUE ..." list.
pair_lookup() {
	local entry
	for entry in $1; do
		[ "${entry%%=*}" = "$2" ] && { echo "${entry#*=}"; return 0; }
	done
	return 1
}

# pair_names LIST: the names of a "NAME=VALUE ..." list, in order.
pair_names() {
	local entry
	for entry in $1; do
		echo "${entry%%=*}"
	done
}

# linux_pin NAME: the pin group (base.conf's variable prefix) of a base.
linux_pin() {
	pair_lookup "$LINUX_BASES" "$1"
}

# linux_bases: the names of every base, mainline first.
linux_bases() {
	pair_names "$LINUX_BASES"
}

LINUX_PIN=$(linux_pin "$LINUX_BASE") || {
	echo "harness: LINUX_BASE=$LINUX_BASE is none of base.conf's LINUX_BASES ($LINUX_BASES)" >&2
	exit 2
}
# The selected base's pins under the names the scripts use.
for _v in PACKAGE VERSION SUITES DEB_SHA256 MEMBER SHA256 KERNELVERSION; do
	_n=${LINUX_PIN}_$_v
	printf -v "BASE_$_v" '%s' "${!_n-}"
	_n=${LINUX_PIN}_DISTRO_$_v
	printf -v "DISTRO_CONFIG_$_v" '%s' "${!_n-}"
done
unset _v _n
if [ "$LINUX_BASE" = mainline ]; then
	BUILD_DIR=$TOP_BUILD_DIR
	PATCH_DIR=${PATCH_DIR:-$TOP_DIR/patches/linux}
else
	BUILD_DIR=$TOP_BUILD_DIR/backport-$LINUX_BASE
	PATCH_DIR=${PATCH_DIR:-$TOP_DIR/patches/linux-$LINUX_BASE}
fi
export BUILD_DIR
TREE_DIR=${TREE_DIR:-$BUILD_DIR/linux}
KBUILD_DIR=${KBUILD_DIR:-$BUILD_DIR/kbuild}
SELFTEST_DIR=${SELFTEST_DIR:-$BUILD_DIR/selftests}
LOG_DIR=${LOG_DIR:-$BUILD_DIR/logs}

# qemu_bases: the names of every QEMU base, mainline first.
qemu_bases() {
	pair_names "$QEMU_BASES"
}

# The QEMU series and its base: QEMU_BASE names one of base.conf's
# QEMU_BASES, by default the one LINUX_QEMU pairs with LINUX_BASE.
# "mainline" is patches/qemu, its work tree TOP_BUILD_DIR/qemu and its
# build TOP_BUILD_DIR/qemu-build; a backport X is patches/qemu-X in
# TOP_BUILD_DIR/qemu-X and qemu-X-build.  QEMU_STOCK_BUILD_DIR is the
# same configuration built from the unpatched base, checked out in
# QEMU_STOCK_TREE_DIR (harness/qemu.sh stock).
# Not exported: a child started with another LINUX_BASE pairs again.
QEMU_BASE=${QEMU_BASE:-$(pair_lookup "$LINUX_QEMU" "$LINUX_BASE" || echo mainline)}
QEMU_PIN=$(pair_lookup "$QEMU_BASES" "$QEMU_BASE") || {
	echo "harness: QEMU_BASE=$QEMU_BASE is none of base.conf's QEMU_BASES ($QEMU_BASES)" >&2
	exit 2
}
for _v in PACKAGE VERSION SUITES DSC DSC_SHA256 ORIG ORIG_SHA256 DEBIAN DEBIAN_SHA256 MESON NAME STOCK; do
	_n=${QEMU_PIN}_$_v
	printf -v "QEMU_BASE_$_v" '%s' "${!_n-}"
done
unset _v _n
if [ "$QEMU_BASE" = mainline ]; then
	_q=qemu
else
	_q=qemu-$QEMU_BASE
fi
QEMU_TREE_DIR=${QEMU_TREE_DIR:-$TOP_BUILD_DIR/$_q}
QEMU_PATCH_DIR=${QEMU_PATCH_DIR:-$TOP_DIR/patches/$_q}
QEMU_BUILD_DIR=${QEMU_BUILD_DIR:-$TOP_BUILD_DIR/$_q-build}
QEMU_STOCK_TREE_DIR=${QEMU_STOCK_TREE_DIR:-$TOP_BUILD_DIR/$_q-stock}
QEMU_STOCK_BUILD_DIR=${QEMU_STOCK_BUILD_DIR:-$TOP_BUILD_DIR/$_q-stock-build}
unset _q
JOBS=${JOBS:-$(nproc)}

# A compiler cache, on unless CCACHE=0: Debian's ccache masquerade
# directory goes first in PATH, so every gcc/cc the harness starts (kbuild,
# the selftests, QEMU's configure and ninja) goes through ccache.  It never
# changes a result (ccache hashes the preprocessed input, the compiler and
# its arguments); it only makes the second build of the same objects fast:
# the gates rebuild what the kernel and QEMU stages built, and a developer's
# next make check rebuilds what the last one did.  The cache is the user's
# (CCACHE_DIR, default ~/.cache/ccache, capped at CCACHE_MAXSIZE); paths
# below the repository are hashed relative to it (CCACHE_BASEDIR), so two
# clones share it.  make check prints its statistics.
if [ "${CCACHE:-1}" != 0 ] && [ -x /usr/lib/ccache/gcc ]; then
	case ":$PATH:" in *:/usr/lib/ccache:*) ;; *) PATH=/usr/lib/ccache:$PATH ;; esac
	export PATH
	export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$TOP_DIR}
	export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
	export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-20G}
fi

# Exit status of each stage.
readonly EXIT_USAGE=2
readonly EXIT_DEPS=10
readonly EXIT_BASE=11
readonly EXIT_CONFIG=12
readonly EXIT_BUILD=13
readonly EXIT_SELFTESTS=14
readonly EXIT_ENV=15
readonly EXIT_TESTS=16

# tree_state TREE: the commit a work tree is at and a hash of its
# uncommitted changes, i.e. what a build from it is built from.
tree_state() {
	printf '%s %s\n' "$(git -C "$1" rev-parse HEAD 2>/dev/null || echo no-commit)" \
		"$(git -C "$1" diff HEAD 2>/dev/null | sha256sum | cut -c1-16)"
}

log() {
	printf '[%s] %s\n' "${SCRIPT_NAME:-harness}" "$*" >&2
}

die() {
	local status=$1
	shift
	log "error: $*"
	exit "$status"
}

# run CMD...: print the command, then run it.
run() {
	printf '+ %s\n' "$*" >&2
	"$@"
}

# git_worktree REPO DIR REV: DIR, a detached git worktree of REPO at REV,
# made once (a DIR that is not a worktree is replaced); the caller checks
# out what it needs.
git_worktree() {
	local repo=$1 dir=$2 rev=$3
	[ -e "$dir/.git" ] && return 0
	rm -rf "$dir"
	git -C "$repo" worktree prune
	run git -C "$repo" worktree add -q --detach "$dir" "$rev" >&2
}

# run_logged LOGFILE CMD...: print the command, append its output to LOGFILE,
# and show the last lines of LOGFILE when it fails.
run_logged() {
	local logfile=$1
	shift
	printf '+ %s  (>> %s)\n' "$*" "$logfile" >&2
	printf '\n+ %s\n' "$*" >>"$logfile"
	if ! "$@" >>"$logfile" 2>&1; then
		log "command failed; last lines of $logfile:"
		tail -n 40 "$logfile" >&2
		return 1
	fi
}

# stage_time NAME START: print how long a stage took.
stage_time() {
	log "stage '$1' took $(($(date +%s) - $2)) s"
}

ensure_dirs() {
	mkdir -p "$BUILD_DIR" "$LOG_DIR"
}

# verify_config CONFIG FRAGMENT...: every option the fragments set must
# hold in CONFIG; where fragments disagree, the last one wins, as in
# merge_config.sh.
verify_config() {
	local config=$1
	shift
	local frag line opt bad=0
	local -A want=() from=()
	for frag in "$@"; do
		while IFS= read -r line; do
			case "$line" in
			CONFIG_*=*) opt=${line%%=*} ;;
			"# CONFIG_"*" is not set") opt=${line#\# }; opt=${opt%% *} ;;
			*) continue ;;
			esac
			want[$opt]=$line
			from[$opt]=$(basename "$frag")
		done <"$frag"
	done
	for opt in "${!want[@]}"; do
		line=${want[$opt]}
		case "$line" in
		CONFIG_*) grep -qxF -- "$line" "$config" ;;
		*) ! grep -qE "^$opt=" "$config" ;;
		esac && continue
		log "requested '$line' (${from[$opt]}) but .config has '$(grep -E "^(# )?$opt[= ]" "$config" || echo "$opt absent")'"
		bad=1
	done
	return "$bad"
}

config_stamp() {
	local src=$1 arch=$2
	shift 2
	{
		echo "$arch"
		cat "$@"
		git -C "$src" ls-files -s -- '*Kconfig*' 2>/dev/null
		echo "$BASE_SHA256"
	} | sha256sum | awk '{print $1}'
}

# make_config SRC OUT ARCH LOG FRAGMENT...: tinyconfig for ARCH in OUT, the
# fragments merged on top, olddefconfig, then every requested option
# checked.  Skipped when the fragments and the Kconfig files are unchanged.
make_config() {
	local src=$1 out=$2 arch=$3 logfile=$4
	shift 4
	local stamp_file=$out/.harness-config-stamp stamp
	stamp=$(config_stamp "$src" "$arch" "$@")
	if [ -f "$out/.config" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
		log "config unchanged ($out)"
		return 0
	fi
	mkdir -p "$out"
	run_logged "$logfile" make -C "$src" O="$out" ARCH="$arch" tinyconfig ||
		die "$EXIT_CONFIG" "tinyconfig failed"
	run_logged "$logfile" env -C "$out" \
		"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$@" ||
		die "$EXIT_CONFIG" "merge_config.sh failed"
	run_logged "$logfile" make -C "$src" O="$out" ARCH="$arch" olddefconfig ||
		die "$EXIT_CONFIG" "olddefconfig failed"
	verify_config "$out/.config" "$@" ||
		die "$EXIT_CONFIG" "config fragment options missing from $out/.config"
	echo "$stamp" >"$stamp_file"
	log "config ok: $out ($(grep -c '=[ym]$' "$out/.config") options on)"
}

# kvm_test_fragments: the test kernel's config fragments for the selected
# base: kvm-test.config, and kvm-test-MAJOR.MINOR.config where one exists.
kvm_test_fragments() {
	local extra=$HARNESS_DIR/config/kvm-test-${BASE_KERNELVERSION%.*}.config
	echo "$HARNESS_DIR/config/kvm-test.config"
	[ ! -f "$extra" ] || echo "$extra"
}

# apply_base_tree: the unpatched base in TREE_DIR (an empty series), for
# the targets that compare with it.
apply_base_tree() {
	local empty
	empty=$(mktemp -d)
	: >"$empty/series"
	PATCH_DIR=$empty "$HARNESS_DIR/tree.sh" apply
	rm -rf "$empty"
}

# build_series [FRAGMENT...]: what every target that boots needs first:
# packages, patches/ applied, the kernel (kernel.sh's default fragments or
# the given ones) and the selftests.
build_series() {
	"$HARNESS_DIR/deps.sh"
	"$HARNESS_DIR/tree.sh" apply
	"$HARNESS_DIR/kernel.sh" "$@"
	"$HARNESS_DIR/selftests.sh"
}

# shellcheck source=pins.sh
. "$HARNESS_DIR/pins.sh"
