#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The pins' failure paths: a pinned version that Debian's archive no longer
# serves, and a file whose sha256 is not the pinned one, must stop the deps
# stage with exit 10 and say what is missing and how to move the pin.  A
# control case fetches the real pin, so a failure case cannot pass because
# the fetch fails for another reason (no network, a broken apt config).
set -euo pipefail
SCRIPT_NAME=test-fetch
. "$(dirname "$0")/../lib.sh"

usage() {
	cat <<USAGE
usage: $0 [CASE...]

Cases: ${CASES[*]}.  Each runs harness/fetch.sh on a copy of
harness/base.conf with one pin changed, in a scratch DL_DIR, and checks its
exit status and message.  Prints "ok"/"not ok" per case and a total.
USAGE
}

CASES=(control missing-version gone-linux-config sha-mismatch)
SCRATCH=$BUILD_DIR/test-fetch
FETCH=$HARNESS_DIR/fetch.sh

# conf_with VAR=VALUE...: a copy of base.conf with those pins changed.
conf_with() {
	local conf=$SCRATCH/base.conf kv
	cp "$BASE_CONF" "$conf"
	for kv in "$@"; do
		grep -q "^${kv%%=*}=" "$conf" || { log "base.conf has no ${kv%%=*}"; return 1; }
		sed -i "s|^${kv%%=*}=.*|$kv|" "$conf"
	done
	echo "$conf"
}

# run_fetch CASE CONF WHAT: harness/fetch.sh WHAT, output in SCRATCH/CASE.out.
run_fetch() {
	local name=$1 conf=$2 what=$3 status=0
	rm -rf "$SCRATCH/dl-$name"
	mkdir -p "$SCRATCH/dl-$name"
	BASE_CONF=$conf DL_DIR=$SCRATCH/dl-$name "$FETCH" "$what" >"$SCRATCH/$name.out" 2>&1 ||
		status=$?
	echo "$status"
}

# expect_lines CASE STATUS WANT_STATUS PATTERN...: the status, and every
# pattern (fixed strings) in the output.
expect_lines() {
	local name=$1 status=$2 want=$3 p ok=0
	shift 3
	if [ "$status" != "$want" ]; then
		log "$name: exit $status, expected $want; output:"
		sed 's/^/    /' "$SCRATCH/$name.out" >&2
		return 1
	fi
	for p in "$@"; do
		grep -qF -- "$p" "$SCRATCH/$name.out" && continue
		log "$name: no line with '$p' in:"
		sed 's/^/    /' "$SCRATCH/$name.out" >&2
		ok=1
	done
	return "$ok"
}

case_control() {
	# The real pin downloads, with the sha256 checked.
	local conf status
	conf=$(conf_with "L2_VERSION=$L2_VERSION")
	status=$(run_fetch control "$conf" l2)
	expect_lines control "$status" 0
}

case_missing-version() {
	# A version of the real package that was never served.
	local conf status ver=${L2_VERSION}+harness.gone
	conf=$(conf_with "L2_VERSION=$ver")
	status=$(run_fetch missing-version "$conf" l2)
	expect_lines missing-version "$status" "$EXIT_DEPS" \
		"error: pinned input missing" \
		"package: $L2_PACKAGE" \
		"version: $ver (harness/base.conf L2_VERSION)" \
		"file:    ${L2_PACKAGE}_${ver}_amd64 or all.deb" \
		"Debian's archive serves: " "$L2_VERSION" \
		"'make rebase'"
}

case_gone-linux-config() {
	# What broke CI on 2026-12-04: the 6.12 distro config pinned as the
	# linux-config-6.12 version that a point release removed.
	local conf status b base=""
	for b in $(linux_bases); do
		[ "$(linux_pin "$b")" = LINUX612 ] && base=$b
	done
	[ -n "$base" ] || { log "no kernel base has the pin group LINUX612"; return 1; }
	conf=$(conf_with LINUX612_DISTRO_PACKAGE=linux-config-6.12 LINUX612_DISTRO_VERSION=6.12.117-1~deb12u1)
	status=$(LINUX_BASE=$base run_fetch gone-linux-config "$conf" distro-config)
	expect_lines gone-linux-config "$status" "$EXIT_DEPS" \
		"error: pinned input missing" \
		"package: linux-config-6.12" \
		"version: 6.12.117-1~deb12u1 (harness/base.conf LINUX612_DISTRO_VERSION)" \
		"'make rebase'"
}

case_sha-mismatch() {
	# The real .deb, but a different pinned sha256.
	local conf status bad=0000000000000000000000000000000000000000000000000000000000000000
	conf=$(conf_with "L2_DEB_SHA256=$bad")
	mkdir -p "$SCRATCH/dl-sha-mismatch"
	# The control downloaded it; a copy spares the second download.
	cp "$SCRATCH"/dl-control/$(deb_glob "$L2_PACKAGE" "$L2_VERSION") "$SCRATCH/dl-sha-mismatch/" 2>/dev/null || true
	status=$(BASE_CONF=$conf DL_DIR=$SCRATCH/dl-sha-mismatch "$FETCH" l2 >"$SCRATCH/sha-mismatch.out" 2>&1; echo $?)
	expect_lines sha-mismatch "$status" "$EXIT_DEPS" \
		"records $bad (L2_DEB_SHA256)" "has sha256 $L2_DEB_SHA256"
}

main() {
	case "${1:-}" in -h|--help) usage; exit 0 ;; esac
	local cases=("$@") c passed=0 failed=0
	[ "${#cases[@]}" -gt 0 ] || cases=("${CASES[@]}")
	mkdir -p "$SCRATCH"
	for c in "${cases[@]}"; do
		if "case_$c"; then
			echo "ok pins/$c"
			passed=$((passed + 1))
		else
			echo "not ok pins/$c"
			failed=$((failed + 1))
		fi
	done
	rm -rf "$SCRATCH"/dl-*
	echo "pin self-tests: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

main "$@"
