#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# make check's test of the demo program (demo/tsc_migrate.c), in KTAP: what
# must hold exactly, and its error paths.  Timing is never asserted.
n=0
fails=0
result() {	# result OK NAME
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n $2"
	else
		echo "not ok $n $2"
		fails=$((fails + 1))
	fi
}

# expect_usage_error ARGS...: exit status 2 and one line on stderr.
expect_usage_error() {
	tsc_migrate "$@" >/tmp/out 2>/tmp/err
	rc=$?
	lines=$(wc -l </tmp/err)
	sed 's/^/# /' /tmp/err
	[ "$rc" = 2 ] && [ "$lines" = 1 ]
}

# expect_check NAME ARGS...: tsc_migrate ARGS --check exits 0.
expect_check() {
	name=$1
	shift
	tsc_migrate "$@" --check >/tmp/out 2>&1
	rc=$?
	sed 's/^/# /' /tmp/out
	result $rc "$name"
}

echo "TAP version 13"
echo "1..9"
expect_check "quick run: tsc-state skew 0 cycles, TSC_STABLE, no backwards reads, kvmclock with the TSC" \
	--quick
expect_check "CLOCK_TAI timestamps: the same" --quick --tai -m tsc-state
expect_check "CLOCK_REALTIME stepped 1 s between two restores: the same" \
	--quick -c 1000 -m tsc-state
expect_check "--cost, 64 vCPUs that never run: tsc-state skew 0 cycles" \
	--cost 3 -n 64
expect_usage_error -m bogus
result $? "unknown method: one-line error, exit 2"
expect_usage_error -n 0
result $? "zero vCPUs: one-line error, exit 2"
expect_usage_error -n 257
result $? "too many vCPUs: one-line error, exit 2"
expect_usage_error -d -5
result $? "negative downtime: one-line error, exit 2"
expect_usage_error --cost 5 -d 100
result $? "--cost with a downtime: one-line error, exit 2"
[ "$fails" = 0 ]
