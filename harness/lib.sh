# SPDX-License-Identifier: GPL-2.0
# Shared helpers for the harness scripts.  Source it; do not run it.
#
# Every path the harness writes is below BUILD_DIR.  Exit status tells the
# stage that failed (see README.md, "Exit status").

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP_DIR=$(dirname "$HARNESS_DIR")

# shellcheck source=base.conf
. "$HARNESS_DIR/base.conf"

BUILD_DIR=${BUILD_DIR:-$TOP_DIR/build}
TREE_DIR=${TREE_DIR:-$BUILD_DIR/linux}
KBUILD_DIR=${KBUILD_DIR:-$BUILD_DIR/kbuild}
SELFTEST_DIR=${SELFTEST_DIR:-$BUILD_DIR/selftests}
LOG_DIR=${LOG_DIR:-$BUILD_DIR/logs}
PATCH_DIR=${PATCH_DIR:-$TOP_DIR/patches}
JOBS=${JOBS:-$(nproc)}

# Exit status of each stage.
readonly EXIT_USAGE=2
readonly EXIT_DEPS=10
readonly EXIT_BASE=11
readonly EXIT_CONFIG=12
readonly EXIT_BUILD=13
readonly EXIT_SELFTESTS=14
readonly EXIT_ENV=15
readonly EXIT_TESTS=16

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
