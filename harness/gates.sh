#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Quality gates of the series: what a KVM maintainer or a distro kernel
# builder checks before reading a line of it.
set -euo pipefail
SCRIPT_NAME=gates
. "$(dirname "$0")/lib.sh"

ALL_GATES=(tools checkpatch cover apply bisect sparse i386 distro uapi htmldocs maintainers
	qemu_checkpatch qemu_cover qemu_headers qemu_bisect)

usage() {
	cat <<USAGE
usage: $0 [GATE...]

Runs the named gates (default: all, in this order) on the series in
PATCH_DIR ($PATCH_DIR) against the recorded base, in a git worktree of
the work tree at GATES_DIR/tree, and prints one line per gate with its
time, then "gates: N passed, N failed".

  tools        no patch edits the tools/ copies of the uAPI headers or .gitignore
  checkpatch   scripts/checkpatch.pl --strict: no error; every warning or
               check left is quoted in the cover letter
  cover        the cover letter has the problem, design, testing, what was not
               tested, the base and its sha256, every patch's subject, and no
               @NAME@ placeholder of harness/cover/linux.txt left
  apply        git am of every patch in series order onto the base, no fuzz,
               no whitespace error
  bisect       every prefix builds arch/x86/kvm/ with KVM=y KVM_AMD=m
               KVM_INTEL=m KVM_WERROR=y W=1 (no warning the base lacks); a
               prefix whose last patch touches only tools/ and
               Documentation/ is not built again (same inputs)
  sparse       make C=2 on arch/x86/kvm/'s touched .c files with the pinned sparse (base.conf's
               SPARSE, built from source): no sparse warning the base lacks
  i386         a 32-bit kernel with KVM (KVM_WERROR=y) still builds arch/x86/kvm/
  distro       Debian's production amd64 config (DISTRO_CONFIG, debug info
               off, KVM=m KVM_AMD=m KVM_INTEL=m): arch/x86/kvm/ builds with
               W=1 and no warning the base lacks (the selftests stage of
               make check builds the selftests against the same uAPI headers)
  uapi         the installed headers compile as C and C++ with -m32 and -m64,
               and struct kvm_tsc_state has one layout on both (taken
               at compile time: nothing 32-bit runs)
  htmldocs     make htmldocs SPHINXDIRS=virt: no warning from a file the
               series touches
  maintainers  scripts/get_maintainer.pl names a KVM entry for every file touched

The QEMU series in QEMU_PATCH_DIR ($QEMU_PATCH_DIR):
  qemu_checkpatch  QEMU's scripts/checkpatch.pl: no error; every warning
               left is quoted in the QEMU cover letter
  qemu_cover   the QEMU cover letter has the testing sections, the base and
               its sha256, every patch's subject, and no placeholder left
  qemu_headers the uAPI the series copies into linux-headers/ is, line for
               line, the kernel series' (capability, flags, struct, ioctls)
  qemu_bisect  every prefix applies with git am and builds
               qemu-system-x86_64 with -Werror (harness/qemu.sh's options)

apply runs first whenever bisect, sparse, i386, distro, uapi, htmldocs
or maintainers is asked for.  Environment: GATES_DIR (default
BUILD_DIR/gates), COVER_LETTER (default PATCH_DIR/0000-cover-letter.patch),
UAPI_INCLUDE (test the uapi gate on these installed headers instead).
USAGE
}

GATES_DIR=${GATES_DIR:-$BUILD_DIR/gates}
GTREE=$GATES_DIR/tree
COVER_LETTER=${COVER_LETTER:-$PATCH_DIR/0000-cover-letter.patch}
GLOG=$GATES_DIR/logs
BISECT_OUT=$GATES_DIR/kbuild-x86_64
I386_OUT=$GATES_DIR/kbuild-i386
DISTRO_OUT=$GATES_DIR/kbuild-distro
PREFIXES=()	# commit of each prefix of the series, filled by gate_apply

fail() {
	log "FAIL: $*"
	return 1
}

series_files() {
	local name
	while read -r name; do
		case "$name" in ''|'#'*) continue ;; esac
		echo "$PATCH_DIR/$name"
	done <"$PATCH_DIR/series"
}

# Files a patch touches, from its diff headers.
touched_files() {
	sed -n 's|^+++ b/||p; s|^--- a/||p' "$@" | grep -v '^/dev/null' | sort -u
}

gtree() {
	git -C "$GTREE" "$@"
}

prepare_worktree() {
	mkdir -p "$GATES_DIR" "$GLOG"
	[ -d "$TREE_DIR/.git" ] || "$HARNESS_DIR/tree.sh" apply
	git_worktree "$TREE_DIR" "$GTREE" base
	gtree am --abort >/dev/null 2>&1 || true
	gtree checkout -q --detach -f base
	gtree clean -q -f -d
}

gate_tools() {
	local bad
	bad=$(touched_files $(series_files) |
		grep -E '^(tools/include/uapi/|tools/arch/[^/]*/include/uapi/|\.gitignore$|.*/\.gitignore$)' || true)
	log "checked $(series_files | wc -l) patches for edits of tools/ uAPI copies and .gitignore"
	[ -z "$bad" ] || fail "the series edits: $(echo "$bad" | tr '\n' ' ')(edit include/uapi and arch/x86/include/uapi only)"
}

# justified PATCH COVER_TEXT COVER_FILE: every report read from stdin (one
# message a line) is quoted in the cover letter's text.
justified() {
	local msg status=0
	while IFS= read -r msg; do
		[ -n "$msg" ] || continue
		grep -qF -- "$msg" <<<"$2" ||
			fail "$(basename "$1"): '$msg' is not justified in $3" || status=1
	done < <(sed 's/ *$//' | sort -u)
	return "$status"
}

gate_checkpatch() {
	local p out status=0 msg cover
	cover=$(tr -s ' \n' '  ' <"$COVER_LETTER" 2>/dev/null || true)
	for p in $(series_files); do
		# From inside the base tree, on stdin: checkpatch's own file mode
		# misfires on a path inside another git repository.
		out=$(cd "$TREE_DIR" && scripts/checkpatch.pl --strict --show-types --no-summary - <"$p" 2>&1 || true)
		if grep -q '^ERROR:' <<<"$out"; then
			grep -A3 '^ERROR:' <<<"$out" | sed 's/^/  /' >&2
			fail "checkpatch errors in $(basename "$p")" || status=1
		fi
		justified "$p" "$cover" "$COVER_LETTER" < <(sed -n 's/^\(WARNING\|CHECK\):[A-Z_]*: \(.*\)$/\2/p' <<<"$out") ||
			status=1
		log "checkpatch --strict: $(basename "$p"): $(grep -cE '^(ERROR|WARNING|CHECK):' <<<"$out" || true) reports"
	done
	return "$status"
}

# no_placeholder COVER: no @NAME@ left of harness/cover/*.txt.
no_placeholder() {
	local left
	left=$(grep -oE '@[A-Z0-9_]+@' "$1" | sort -u | tr '\n' ' ')
	[ -z "$left" ] || fail "$(basename "$(dirname "$1")") cover letter still has placeholders: $left"
}

# check_cover COVER VERSION SHA256 PATCH...: the sections every cover
# letter has, its base, no placeholder left, every patch's subject.
check_cover() {
	local c=$1 version=$2 sha=$3 status=0 section p subject
	shift 3
	[ -f "$c" ] || { fail "no cover letter $c"; return 1; }
	no_placeholder "$c" || status=1
	for section in "Subject: \[PATCH 0/" "Testing" "Not tested" "Intel VMX" \
		"$version" "$sha" "files changed"; do
		grep -q -- "$section" "$c" || fail "$c lacks '$section'" || status=1
	done
	for p in "$@"; do
		subject=$(sed -n 's/^Subject: \[PATCH[^]]*\] //p' "$p" | head -n 1)
		grep -qF -- "$subject" "$c" || fail "$c lacks the shortlog line '$subject'" || status=1
	done
	log "checked $(basename "$(dirname "$c")")'s cover letter: sections, base, sha256, shortlog"
	return "$status"
}

gate_cover() {
	check_cover "$COVER_LETTER" "$BASE_VERSION" "$BASE_SHA256" $(series_files)
}

gate_apply() {
	PREFIXES=()
	prepare_worktree
	# One git am for the series; each commit it makes is a prefix, and on
	# a failure their number tells which patch failed.
	local files=() n
	mapfile -t files < <(series_files)
	if ! gtree am -q --whitespace=error-all "${files[@]}" >"$GLOG/am.log" 2>&1; then
		sed 's/^/  /' "$GLOG/am.log" >&2
		n=$(gtree rev-list --count base..HEAD)
		gtree am --abort >/dev/null 2>&1 || true
		fail "$(basename "${files[$n]:-${files[-1]}}") does not apply to the base with git am"
		return 1
	fi
	mapfile -t PREFIXES < <(gtree rev-list --reverse base..HEAD)
	log "git am: ${#PREFIXES[@]} patches applied to $BASE_PACKAGE $BASE_VERSION"
}

# build_kvm OUT ARCH LOG [MAKE_ARGS...]: build the arch/x86/kvm/ objects of
# the worktree's checkout.  W=1 warnings in arch/x86/kvm/ go to LOG.warnings.
build_kvm() {
	local out=$1 arch=$2 logfile=$3
	shift 3
	: >"$logfile"
	run_logged "$logfile" make -C "$GTREE" O="$out" ARCH="$arch" -j"$JOBS" "$@" arch/x86/kvm/ ||
		return 1
	grep -E '^[^ ]*arch/x86/kvm/[^ ]*: warning:' "$logfile" |
		sed -E 's/:[0-9]+:[0-9]+:/:/' | sort -u >"$logfile.warnings" || true
}

ensure_prefixes() {
	[ "${#PREFIXES[@]}" -gt 0 ] || gate_apply
}

gate_bisect() {
	ensure_prefixes || return 1
	local i status=0 new files
	gtree checkout -q --detach base
	make_config "$GTREE" "$BISECT_OUT" x86_64 "$GLOG/config-x86_64.log" \
		"$HARNESS_DIR/config/kvm-test.config" "$HARNESS_DIR/config/bisect.config"
	build_kvm "$BISECT_OUT" x86_64 "$GLOG/bisect-base.log" W=1 ||
		{ fail "the base does not build arch/x86/kvm/ (see $GLOG/bisect-base.log)"; return 1; }
	for i in "${!PREFIXES[@]}"; do
		# A patch that touches only tools/ and Documentation/ changes no
		# input of the arch/x86/kvm/ build: the prefix before it stands.
		files=$(gtree diff --name-only "${PREFIXES[$i]}^" "${PREFIXES[$i]}")
		if [ "$i" -gt 0 ] && ! grep -qvE '^(tools|Documentation)/' <<<"$files"; then
			log "prefix $((i + 1))/${#PREFIXES[@]}: tools/ and Documentation/ only, as prefix $i for arch/x86/kvm/: $(gtree log -1 --format=%s "${PREFIXES[$i]}")"
			continue
		fi
		gtree checkout -q --detach "${PREFIXES[$i]}"
		if ! build_kvm "$BISECT_OUT" x86_64 "$GLOG/bisect-$((i + 1)).log" W=1; then
			fail "patches 1-$((i + 1)) do not build (last: $(gtree log -1 --format=%s); see $GLOG/bisect-$((i + 1)).log)" || status=1
			break
		fi
		new=$(comm -13 "$GLOG/bisect-base.log.warnings" "$GLOG/bisect-$((i + 1)).log.warnings")
		if [ -n "$new" ]; then
			echo "$new" | sed 's/^/  /' >&2
			fail "patches 1-$((i + 1)) add W=1 warnings in arch/x86/kvm/" || status=1
		fi
		log "prefix $((i + 1))/${#PREFIXES[@]} builds: $(gtree log -1 --format=%s)"
	done
	return "$status"
}

# sparse_objs: the objects of the C files under arch/x86/kvm/ that the
# series touches (x86.o at least).
sparse_objs() {
	{ echo arch/x86/kvm/x86.c; touched_files $(series_files); } |
		grep -E '^arch/x86/kvm/[^/]+\.c$' | sort -u | sed 's/\.c$/.o/'
}

# sparse_x86 LOG OBJ...: sparse on those objects' sources in the worktree's
# checkout.  Fails when kbuild ran no checker: Linux 6.14 and later drop
# C=2 with a warning, not an error, when scripts/checker-valid.sh rejects
# the checker.
sparse_x86() {
	local logf=$1 o
	shift
	: >"$logf"
	run_logged "$logf" make -C "$GTREE" O="$BISECT_OUT" ARCH=x86_64 -j"$JOBS" C=2 \
		CHECK="$SPARSE" "$@" || return 1
	grep -q "is not available or not up to date" "$logf" && { log "kbuild ran no sparse (see $logf)"; return 1; }
	for o in "$@"; do
		grep -q "CHECK .*${o%.o}.c" "$logf" || { log "kbuild ran no sparse on ${o%.o}.c (see $logf)"; return 1; }
	done
	grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' "$logf" |
		sed -E 's/:[0-9]+:[0-9]+:/:/' | sort -u >"$logf.reports" || true
}

gate_sparse() {
	ensure_prefixes || return 1
	local SPARSE objs
	SPARSE=$(sparse_bin) || { fail "the pinned sparse could not be built"; return 1; }
	[ -f "$BISECT_OUT/.config" ] || gate_bisect >/dev/null || return 1
	mapfile -t objs < <(sparse_objs)
	gtree checkout -q --detach base
	sparse_x86 "$GLOG/sparse-base.log" "${objs[@]}" || fail "sparse run on the base failed" || return 1
	gtree checkout -q --detach "${PREFIXES[-1]}"
	sparse_x86 "$GLOG/sparse-series.log" "${objs[@]}" || fail "sparse run on the series failed" || return 1
	local new
	new=$(comm -13 "$GLOG/sparse-base.log.reports" "$GLOG/sparse-series.log.reports")
	log "sparse ($SPARSE_PACKAGE $SPARSE_VERSION, ${objs[*]}): $(wc -l <"$GLOG/sparse-base.log.reports") reports on the base, $(wc -l <"$GLOG/sparse-series.log.reports") with the series"
	[ -z "$new" ] || { echo "$new" | sed 's/^/  /' >&2; fail "sparse reports the base does not have"; }
}

gate_i386() {
	ensure_prefixes || return 1
	gtree checkout -q --detach "${PREFIXES[-1]}"
	make_config "$GTREE" "$I386_OUT" i386 "$GLOG/config-i386.log" "$HARNESS_DIR/config/i386.config"
	build_kvm "$I386_OUT" i386 "$GLOG/i386.log" ||
		{ fail "arch/x86/kvm/ does not build for i386 with the series (see $GLOG/i386.log)"; return 1; }
	log "i386: arch/x86/kvm/ builds with KVM_WERROR=y"
}

# distro_config: Debian's config in DISTRO_OUT, debug info off (it only
# slows the build), KVM and both vendor modules as modules.
distro_config() {
	local stamp
	stamp=$(sha256sum <"$DISTRO_CONFIG" | cut -d' ' -f1)
	if [ -f "$DISTRO_OUT/.config" ] && [ "$(cat "$DISTRO_OUT/.distro-stamp" 2>/dev/null)" = "$stamp" ]; then
		return 0
	fi
	mkdir -p "$DISTRO_OUT"
	xzcat "$DISTRO_CONFIG" >"$DISTRO_OUT/.config"
	"$GTREE/scripts/config" --file "$DISTRO_OUT/.config" \
		-d DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT -d DEBUG_INFO_DWARF4 -d DEBUG_INFO_DWARF5 \
		-e DEBUG_INFO_NONE -m KVM -m KVM_AMD -m KVM_INTEL
	run_logged "$GLOG/config-distro.log" make -C "$GTREE" O="$DISTRO_OUT" ARCH=x86_64 olddefconfig ||
		return 1
	local opt
	for opt in CONFIG_KVM=m CONFIG_KVM_AMD=m CONFIG_KVM_INTEL=m CONFIG_KVM_XEN=y \
		CONFIG_KVM_HYPERV=y CONFIG_KVM_AMD_SEV=y CONFIG_X86_SGX_KVM=y; do
		grep -qx "$opt" "$DISTRO_OUT/.config" || { log "distro config lacks $opt"; return 1; }
	done
	echo "$stamp" >"$DISTRO_OUT/.distro-stamp"
}

gate_distro() {
	ensure_prefixes || return 1
	[ -f "$DISTRO_CONFIG" ] || fail "no $DISTRO_CONFIG: harness/fetch.sh distro-config fetches it" || return 1
	echo "$DISTRO_CONFIG_SHA256  $DISTRO_CONFIG" | sha256sum -c --quiet - >/dev/null 2>&1 ||
		fail "$DISTRO_CONFIG is not the recorded $DISTRO_CONFIG_PACKAGE $DISTRO_CONFIG_VERSION" || return 1
	gtree checkout -q --detach base
	distro_config || fail "the distro config does not configure (see $GLOG/config-distro.log)" || return 1
	build_kvm "$DISTRO_OUT" x86_64 "$GLOG/distro-base.log" W=1 ||
		{ fail "the base does not build arch/x86/kvm/ with the distro config"; return 1; }
	gtree checkout -q --detach "${PREFIXES[-1]}"
	build_kvm "$DISTRO_OUT" x86_64 "$GLOG/distro-series.log" W=1 ||
		{ fail "the series does not build arch/x86/kvm/ with the distro config (see $GLOG/distro-series.log)"; return 1; }
	local new
	new=$(comm -13 "$GLOG/distro-base.log.warnings" "$GLOG/distro-series.log.warnings")
	if [ -n "$new" ]; then
		echo "$new" | sed 's/^/  /' >&2
		fail "the series adds W=1 warnings in arch/x86/kvm/ with the distro config"
		return 1
	fi
	# The selftests are not built again here: make headers installs the
	# same uAPI headers whatever the config, and the selftests stage of
	# make check builds them against those.
	log "distro: $(basename "$DISTRO_CONFIG") $DISTRO_CONFIG_VERSION: arch/x86/kvm/ builds with W=1, $(wc -l <"$GLOG/distro-base.log.warnings") warnings on the base and none new"
}

# The layout of struct kvm_tsc_state, taken at compile time as the kernel's
# asm-offsets.c does: the compiler writes each offset and size into its
# assembly output, and no program runs (the host need not run -m32
# binaries).  Each line is "->member offset size".
UAPI_LAYOUT_PROG='#include <stddef.h>
#include <linux/kvm.h>
#define M(f) asm volatile("\n.ascii \"->" #f " %c0 %c1\"" : : \
	"i" (offsetof(struct kvm_tsc_state, f)), \
	"i" (sizeof(((struct kvm_tsc_state *)0)->f)))
void kvm_tsc_state_layout(void)
{
	asm volatile("\n.ascii \"->size %c0 0\"" : : "i" (sizeof(struct kvm_tsc_state)));
	M(flags); M(pad); M(nsec); M(tsc); M(tsc_adjust); M(ref_nsec); M(ref_host_tsc);
	M(reserved);
}'

# uapi_layout BITS INCLUDE_DIR OUT: the layout lines of a -mBITS compile.
uapi_layout() {
	local bits=$1 inc=$2 out=$3 d=$GATES_DIR/uapi
	echo "$UAPI_LAYOUT_PROG" >"$d/layout.c"
	gcc -m"$bits" -Wall -Werror -isystem "$inc" -S -o "$d/layout-$bits.s" "$d/layout.c" 2>"$d/cc.log" ||
		{ sed 's/^/  /' "$d/cc.log" >&2; return 1; }
	sed -n 's/^[[:space:]]*\.ascii "->\(.*\)"$/\1/p' "$d/layout-$bits.s" >"$out"
	# One line per member and the size, or the extraction failed.
	[ "$(wc -l <"$out")" -eq 9 ] ||
		{ log "uapi: $d/layout-$bits.s gave $(wc -l <"$out") layout lines, not 9"; return 1; }
}

# uapi_check INCLUDE_DIR: the headers compile, the layout is the same.
uapi_check() {
	local inc=$1 d=$GATES_DIR/uapi bits lang status=0
	mkdir -p "$d"
	printf '#include <linux/kvm.h>\n#include <asm/kvm.h>\nint kvm_uapi_dummy;\n' >"$d/include.c"
	for bits in 32 64; do
		for lang in c c++; do
			if ! gcc -x "$lang" -m"$bits" -Wall -Werror -isystem "$inc" -c \
				-o "$d/include-$bits.o" "$d/include.c" 2>"$d/cc.log"; then
				sed 's/^/  /' "$d/cc.log" >&2
				fail "linux/kvm.h does not compile as $lang -m$bits" || status=1
			fi
		done
		uapi_layout "$bits" "$inc" "$d/layout-$bits.txt" ||
			{ fail "the layout of struct kvm_tsc_state does not compile with -m$bits"; return 1; }
	done
	[ "$status" -eq 0 ] || return 1
	if ! diff -u "$d/layout-32.txt" "$d/layout-64.txt" >"$d/layout.diff"; then
		sed 's/^/  /' "$d/layout.diff" >&2
		fail "struct kvm_tsc_state differs between -m32 and -m64"
		return 1
	fi
	log "uapi: C and C++, -m32 and -m64; struct kvm_tsc_state: $(head -n 1 "$d/layout-64.txt" | cut -d" " -f1-2) bytes on both"
}

gate_uapi() {
	if [ -n "${UAPI_INCLUDE:-}" ]; then
		uapi_check "$UAPI_INCLUDE"
		return
	fi
	ensure_prefixes || return 1
	gtree checkout -q --detach "${PREFIXES[-1]}"
	rm -rf "$GATES_DIR/uapi-headers"
	run_logged "$GLOG/uapi.log" make -C "$GTREE" O="$GATES_DIR/kbuild-headers" ARCH=x86_64 \
		INSTALL_HDR_PATH="$GATES_DIR/uapi-headers" headers_install ||
		{ fail "make headers_install failed"; return 1; }
	uapi_check "$GATES_DIR/uapi-headers/include"
}

# htmldocs_check LOG FILES...: no Sphinx warning names one of FILES.
htmldocs_check() {
	local logfile=$1 f status=0
	shift
	: >"$logfile"
	# -E: read every file again, so warnings of unchanged files are seen too.
	run_logged "$logfile" make -C "$GTREE" O="$GATES_DIR/docs" SPHINXDIRS=virt SPHINXOPTS=-E htmldocs ||
		{ fail "make htmldocs failed (see $logfile)"; return 1; }
	for f in "$@"; do
		case "$f" in Documentation/virt/*) ;; *) continue ;; esac
		if grep -E "(WARNING|ERROR|CRITICAL)" "$logfile" | grep -qF "$f"; then
			grep -E "(WARNING|ERROR|CRITICAL)" "$logfile" | grep -F "$f" | sed 's/^/  /' >&2
			fail "Sphinx reports problems in $f" || status=1
		fi
	done
	return "$status"
}

gate_htmldocs() {
	ensure_prefixes || return 1
	command -v sphinx-build >/dev/null || fail "sphinx-build (python3-sphinx) is not installed" || return 1
	gtree checkout -q --detach "${PREFIXES[-1]}"
	local files
	files=$(touched_files $(series_files))
	htmldocs_check "$GLOG/htmldocs.log" $files || return 1
	log "htmldocs: no warning from $(echo "$files" | grep -c '^Documentation/virt/' || true) touched documentation files"
}

gate_maintainers() {
	ensure_prefixes || return 1
	gtree checkout -q --detach "${PREFIXES[-1]}"
	local f out status=0 n=0
	for f in $(touched_files $(series_files)); do
		n=$((n + 1))
		out=$(cd "$GTREE" && scripts/get_maintainer.pl --no-git --no-git-fallback -f "$f" 2>/dev/null || true)
		grep -q "KERNEL VIRTUAL MACHINE" <<<"$out" ||
			fail "no KVM entry in MAINTAINERS covers $f" || status=1
	done
	log "get_maintainer.pl: a KVM entry for each of $n touched files"
	return "$status"
}

qemu_series_files() {
	PATCH_DIR=$QEMU_PATCH_DIR series_files
}

QTREE=$GATES_DIR/qemu-tree
QBUILD=$GATES_DIR/qemu-build
QEMU_COVER=$QEMU_PATCH_DIR/0000-cover-letter.patch

gate_qemu_checkpatch() {
	[ -d "$QEMU_TREE_DIR/.git" ] || "$HARNESS_DIR/tree.sh" qemu apply
	local p out status=0 msg cover
	cover=$(tr -s ' \n' '  ' <"$QEMU_COVER" 2>/dev/null || true)
	for p in $(qemu_series_files); do
		out=$(cd "$QEMU_TREE_DIR" && perl scripts/checkpatch.pl --no-tree -q "$p" 2>&1 || true)
		if grep -q '^ERROR:' <<<"$out"; then
			grep -A3 '^ERROR:' <<<"$out" | sed 's/^/  /' >&2
			fail "QEMU checkpatch errors in $(basename "$p")" || status=1
		fi
		justified "$p" "$cover" "$QEMU_COVER" < <(sed -n 's/^WARNING: \(.*\)$/\1/p' <<<"$out") ||
			status=1
		log "QEMU checkpatch: $(basename "$p"): $(grep -cE '^(ERROR|WARNING):' <<<"$out" || true) reports"
	done
	return "$status"
}

gate_qemu_cover() {
	check_cover "$QEMU_COVER" "$QEMU_BASE_VERSION" "$QEMU_BASE_DSC_SHA256" $(qemu_series_files)
}

# uapi_defs FILE: the precise-TSC uAPI of a kvm.h, one item a line.
uapi_defs() {
	awk '
		/^#define KVM_CAP_PRECISE_TSC[ \t]/ ||
		/^#define KVM_TSC_STATE_[A-Z_]*[ \t]/ ||
		/^#define KVM_(GET|SET)_TSC_STATE[ \t]/ { $1 = $1; print; next }
		/^struct kvm_tsc_state \{/ { in_struct = 1 }
		in_struct { $1 = $1; print; if ($0 ~ /^\};/) in_struct = 0 }
	' "$1"
}

gate_qemu_headers() {
	ensure_prefixes || return 1
	qemu_am_series || return 1
	local k=$GLOG/uapi-kernel.txt q=$GLOG/uapi-qemu.txt
	gtree show "${PREFIXES[-1]}:include/uapi/linux/kvm.h" >"$GLOG/kvm-kernel.h"
	git -C "$QTREE" show HEAD:linux-headers/linux/kvm.h >"$GLOG/kvm-qemu.h"
	uapi_defs "$GLOG/kvm-kernel.h" >"$k"
	uapi_defs "$GLOG/kvm-qemu.h" >"$q"
	[ "$(grep -c . "$k")" -ge 19 ] || { fail "found only $(grep -c . "$k") uAPI lines in the kernel's kvm.h"; return 1; }
	if ! diff -u "$k" "$q" >"$GLOG/uapi.diff"; then
		sed 's/^/  /' "$GLOG/uapi.diff" >&2
		fail "patches/qemu's linux-headers/linux/kvm.h differs from the kernel series' uAPI"
		return 1
	fi
	log "linux-headers/linux/kvm.h has the kernel series' $(grep -c . "$k") uAPI lines"
}

# qemu_am_series [BUILD]: the QEMU series applied with git am in a
# worktree of the QEMU work tree at QTREE; with BUILD, every prefix built.
qemu_am_series() {
	[ -d "$QEMU_TREE_DIR/.git" ] || "$HARNESS_DIR/tree.sh" qemu apply
	local p i=0 n status=0
	n=$(qemu_series_files | wc -l)
	git_worktree "$QEMU_TREE_DIR" "$QTREE" base
	git -C "$QTREE" am --abort >/dev/null 2>&1 || true
	git -C "$QTREE" checkout -q --detach -f base
	git -C "$QTREE" clean -q -f -d
	for p in $(qemu_series_files); do
		i=$((i + 1))
		if ! git -C "$QTREE" am -q --whitespace=error-all "$p" >"$GLOG/qemu-am.log" 2>&1; then
			sed 's/^/  /' "$GLOG/qemu-am.log" >&2
			git -C "$QTREE" am --abort >/dev/null 2>&1 || true
			fail "$(basename "$p") does not apply to the QEMU base with git am"
			return 1
		fi
		[ -n "${1:-}" ] || continue
		if ! QEMU_TREE_DIR=$QTREE QEMU_BUILD_DIR=$QBUILD LOG_DIR=$GLOG \
			"$HARNESS_DIR/qemu.sh" >"$GLOG/qemu-bisect-$i.log" 2>&1; then
			tail -n 20 "$GLOG/qemu-bisect-$i.log" | sed 's/^/  /' >&2
			fail "QEMU patches 1-$i do not build (last: $(git -C "$QTREE" log -1 --format=%s))" || status=1
			break
		fi
		log "QEMU prefix $i/$n applies and builds: $(git -C "$QTREE" log -1 --format=%s)"
	done
	return "$status"
}

gate_qemu_bisect() {
	qemu_am_series build
}

# Gates that use neither the worktree at GTREE nor PREFIXES: they run in
# a second process beside the others (GATES_PARALLEL=0: one after the
# other).  qemu_headers uses the QEMU worktree as qemu_bisect does: it
# runs after that process ends.
SIDE_GATES=" tools checkpatch cover qemu_checkpatch qemu_cover qemu_bisect "
AFTER_SIDE_GATES=" qemu_headers "

# run_gate GATE RESULTS: run it, append "GATE ok|FAIL SECONDS" to RESULTS.
run_gate() {
	local g=$1 results=$2 start verdict=ok
	start=$(date +%s)
	log "=== gate $g"
	"gate_$g" || verdict=FAIL
	echo "$g $verdict $(($(date +%s) - start))" >>"$results"
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local gates=("$@") g passed=0 failed=0 failed_names=() lines=()
	local side=() own=() after=() side_pid="" results verdict secs
	[ "${#gates[@]}" -gt 0 ] || gates=("${ALL_GATES[@]}")
	for g in "${gates[@]}"; do
		declare -F "gate_$g" >/dev/null || die "$EXIT_USAGE" "no gate '$g' (gates: ${ALL_GATES[*]})"
	done
	ensure_dirs
	mkdir -p "$GATES_DIR" "$GLOG"
	# Per run: gate self-tests run two gates.sh at once on one GLOG
	results=$(mktemp "$GLOG/results.XXXXXX")
	for g in "${gates[@]}"; do
		if [ "${GATES_PARALLEL:-1}" != 0 ] && [[ $SIDE_GATES == *" $g "* ]]; then
			side+=("$g")
		elif [[ $AFTER_SIDE_GATES == *" $g "* ]]; then
			after+=("$g")
		else
			own+=("$g")
		fi
	done
	if [ "${#side[@]}" -gt 0 ] && [ "${#own[@]}" -gt 0 ]; then
		log "gates ${side[*]} run beside the others (log: $GLOG/side.log)"
		: >"$results.side"
		( for g in "${side[@]}"; do run_gate "$g" "$results.side"; done ) \
			>"$GLOG/side.out" 2>"$GLOG/side.log" &
		side_pid=$!
	else
		own=("${side[@]}" "${own[@]}")
		side=()
	fi
	for g in "${own[@]}"; do
		run_gate "$g" "$results"
	done
	if [ -n "$side_pid" ]; then
		wait "$side_pid" || true
		cat "$GLOG/side.log" >&2
		cat "$results.side" >>"$results"
	fi
	for g in "${after[@]}"; do
		run_gate "$g" "$results"
	done
	# One line per gate, in the order asked
	for g in "${gates[@]}"; do
		verdict="" secs=""
		read -r verdict secs < <(awk -v g="$g" '$1 == g { print $2, $3 }' "$results") || true
		if [ "${verdict:-}" = ok ]; then
			passed=$((passed + 1))
			lines+=("$(printf 'ok   %-15s %4d s' "$g" "$secs")")
		else
			failed=$((failed + 1))
			failed_names+=("$g")
			lines+=("$(printf 'FAIL %-15s %4d s' "$g" "${secs:-0}")")
		fi
	done
	rm -f "$results" "$results.side"
	printf '%s\n' "${lines[@]}"
	echo "gates: $passed passed, $failed failed${failed_names[*]:+ (${failed_names[*]})}"
	[ "$failed" -eq 0 ] || exit "$EXIT_TESTS"
}

main "$@"
