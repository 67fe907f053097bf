#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The two-host migration (harness/e2e.sh 2host), inside each of two test
# VMs, A and B, each with its own KVM, host TSC and CLOCK_REALTIME, joined
# by a virtual network.  "e2e.host=a" or "=b" on the kernel command line
# gives the role.
#
# For each case, A boots a Debian guest (L2) and B steps its clock to A's
# plus the case's skew (a PTP-like exchange, harness/e2e/clock_xchg.c),
# starts the destination QEMU listening on TCP and measures the offset
# between the hosts; A live-migrates the guest to B over TCP and tells B
# when its source stopped (A's clock); B measures the offset again,
# continues the guest when the downtime (on A's timeline: B's clock minus
# the offset) reaches TARGET_DOWNTIME_MS, and asks the guest's tsc_monitor what
# the migration did to its clocks.
#
# The guest's tsc_monitor measures its TSC against the host's
# CLOCK_REALTIME from ptp_kvm: A's before the migration, B's after.  The
# gap it sees between them is the true downtime plus the offset
# between the hosts, so for a destination that counts its own clock
# minus the source's timestamp its tsc_err is 0, and the TSC's error
# against the true time (A's timeline) is tsc_err + the offset.  The row
# prints both, with the offset's own error (half the exchange's round
# trip).
#
# KTAP, one case per migration on each side: A reports the source's half
# (the migration completed), B the guest's checks.  Messages between the
# two are lines over TCP (busybox nc).  Functions from tsc_e2e.sh.

E2E=${E2E:-/e2e}
# shellcheck disable=SC2034 # read by tsc_e2e.sh
E2E_LIBRARY=1
# shellcheck disable=SC1091
. "$E2E/tsc_e2e.sh"

IP_A=10.0.2.1
IP_B=10.0.2.2
CTL_PORT=5001
CLK_PORT=5002
MIG_PORT=4444
XCHG=$E2E/bin/clock_xchg
# The downtime on A's timeline: from the source's stop to B's cont.
TARGET_DOWNTIME_MS=${TARGET_DOWNTIME_MS:-6000}
# A's boot of a guest: up to L2_BOOT_TRIES boots of L2_BOOT_TIMEOUT each.
CTL_TIMEOUT=${CTL_TIMEOUT:-$((L2_BOOT_TRIES * L2_BOOT_TIMEOUT + 120))}
# B's clock after its step: the case's skew within this (the exchange's
# error is about 1 ms here)
SYNC_TOL_MS=${SYNC_TOL_MS:-5}
# The host's clock gap the guest saw across the migration, minus the
# downtime and the offset (A's timeline): the guest's samples stop a
# little before the stop and resume a little after cont (100-760 ms in
# 13 runs); a gap outside this window is not the migration's
GAP_MIN_MS=${GAP_MIN_MS:--200}
GAP_MAX_MS=${GAP_MAX_MS:-2000}
DONE_TIMEOUT=$((MIGRATE_TIMEOUT + REPORT_TIMEOUT + TARGET_DOWNTIME_MS / 1000 + 60))
W=/tmp/e2e-2host
# the patched QEMU's warning of a destination clock behind the source's
FUTURE_RE='timestamped .* in this host.s future'
# shellcheck disable=SC2034 # tsc_e2e.sh's save target, unused here
MIG=$W/mig
SERLOG=$W/l2.console.log

# The cases: NAME QEMU SKEW_MS CHECK.  B's clock is stepped to A's +
# SKEW_MS before the migration.  CHECK: 1, the precise checks against the
# hosts' clocks (the TSC error against the true time is then the offset);
# behind, the destination's clock behind the source's by more than the
# downtime: the patched QEMU counts none of it and warns; 0: informational
# (stock QEMU).
CASES='2host-precise-synced patched 0 1
2host-precise-ahead-2s patched 2000 1
2host-precise-behind-10s patched -10000 behind
2host-stock-synced stock 0 0'
NR_2HOST=$(echo "$CASES" | grep -c .)

# net_up ADDR: this host on the link.
net_up() {
	ip link set lo up
	ip link set eth0 up || return 1
	ip addr add "$1/24" dev eth0 || return 1
	say "eth0 $1: $(ip -o -4 addr show dev eth0 | awk '{ print $4 }')"
}

# send MSG: one line to the peer; retried while the peer does not listen.
send() {
	deadline=$(($(now_ms) + 120000))
	until printf '%s\n' "$1" | nc -w 5 "$PEER" "$CTL_PORT" 2>/dev/null; do
		[ "$(now_ms)" -lt $deadline ] || { say "error: cannot send to $PEER: $1"; return 1; }
		sleep 0.3
	done
	say "sent: $1"
}

# recv SECONDS: the next line from the peer in MSG.
recv() {
	MSG=$(timeout "$1" nc -l -p "$CTL_PORT" </dev/null | head -n 1 | tr -d '\r')
	if [ -z "$MSG" ]; then
		say "error: nothing from $PEER in $1 s"
		return 1
	fi
	say "received: $MSG"
}

# expect WORD NAME SECONDS: recv, and the message is "WORD NAME ..."; the
# rest of it in MSG_REST.
expect() {
	recv "$3" || return 1
	# shellcheck disable=SC2086 # its words
	set -- "$1" "$2" $MSG
	if [ "$3" != "$1" ] || [ "$4" != "$2" ]; then
		say "error: expected \"$1 $2 ...\""
		return 1
	fi
	shift 4
	MSG_REST=$*
}

qemu_of() {
	case $1 in
	patched) echo "$PATCHED_QEMU $PATCHED_ACCEL" ;;
	stock) echo "$STOCK_QEMU $STOCK_ACCEL" ;;
	esac
}

# measure_offset: the offset of this host's clock (B's) from A's, O_NS
# (B - A), and its error, O_ERR_NS; O_MS: O_NS rounded to ms.
measure_offset() {
	out=$("$XCHG" query "$IP_A" -p "$CLK_PORT" 2>&1)
	say "$out"
	# clock_xchg prints the peer's (A's) clock - this one's (B's)
	O_NS=$(echo "$out" | sed -n 's/^clock_xchg: offset_ns=\(-*[0-9]*\) .*/\1/p')
	O_ERR_NS=$(echo "$out" | sed -n 's/^clock_xchg: offset_ns=.* err_ns=\([0-9]*\) .*/\1/p')
	[ -n "$O_NS" ] || return 1
	# B - A
	O_NS=$((-O_NS))
	O_MS=$(((O_NS + (O_NS < 0 ? -500000 : 500000)) / 1000000))
}

# --- host A: the source ------------------------------------------------

source_case() {	# NAME QEMU SKEW CHECK
	# shellcheck disable=SC2046 # binary and accel
	set -- "$1" $(qemu_of "$2")
	start_guest "guest-$1" "$2" "$3"
	if [ -n "$BROKEN" ]; then
		send "skip $1 $BROKEN"
		result 1 "$1-source" "$BROKEN"
		BROKEN=
		return
	fi
	send "ready $1" || { result 1 "$1-source" "B not reached"; return 1; }
	if ! expect incoming "$1" "$MIGRATE_TIMEOUT"; then
		result 1 "$1-source" "B did not start its destination"
		stop_guest
		return 1
	fi
	start_migration
	if save_vm; then
		send "migrated $1 $T_STOP $SRC_OFFSETS"
		reap_retired
		result 0 "$1-source"
	else
		send "failed $1"
		diagnostics
		# (a guest that resets ends its QEMU, with status 0: -no-reboot)
		if qemu_running; then
			qemu_quit
		elif [ -n "$QPID" ]; then
			qemu_reap 1
			say "the source QEMU had exited, status $QEMU_RC"
		fi
		result 1 "$1-source" "the migration to B failed"
	fi
	expect finished "$1" "$DONE_TIMEOUT"
}

# lost_peer PEER SUFFIX: the protocol broke; every case not reported
# fails.
lost_peer() {
	BROKEN="lost $1"
	# shellcheck disable=SC2154 # tsc_e2e.sh's count of results
	while [ "$n" -lt "$NR_2HOST" ]; do
		name=$(echo "$CASES" | sed -n "$((n + 1))p" | cut -d' ' -f1)
		result 1 "$name$2" "$BROKEN"
	done
}

# each_case FUNCTION: FUNCTION NAME QEMU SKEW CHECK for each case, in this
# shell (the results count); stops at the first that fails.
each_case() {
	while read -r name q skew check; do
		"$1" "$name" "$q" "$skew" "$check" </dev/null || return 1
	done <<EOF
$CASES
EOF
}

source_main() {
	PEER=$IP_B
	# shellcheck disable=SC2034 # save_vm migrates there
	SAVE_URI=tcp:$IP_B:$MIG_PORT
	"$XCHG" serve -p "$CLK_PORT" &
	XCHG_PID=$!
	each_case source_case || lost_peer B -source
	kill "$XCHG_PID" 2>/dev/null
}

# --- host B: the destination ---------------------------------------------

dest_case() {	# NAME QEMU SKEW CHECK
	name=$1 skew=$3 check=$4
	# shellcheck disable=SC2046 # binary and accel
	set -- "$1" $(qemu_of "$2")
	if ! expect ready "$name" "$CTL_TIMEOUT"; then
		case $MSG in
		"skip $name "*) result 1 "$name" "A: ${MSG#skip "$name" }"; return 0 ;;
		esac
		result 1 "$name" "no guest from A"
		return 1
	fi
	# a fresh guest: its own console log, tsc_monitor's first round
	[ -s "$SERLOG" ] && cat "$SERLOG" >>"$W/l2.earlier.log"
	: >"$SERLOG"
	ROUND=1
	# (as on A: after this line a failure is not the environment's)
	start_migration
	if ! "$XCHG" query "$IP_A" -p "$CLK_PORT" -s "$skew" >"$W/sync.out" 2>&1; then
		prefix sync <"$W/sync.out"
		result 1 "$name" "stepping this clock failed"
		send "failed $name"
		return 1
	fi
	prefix sync <"$W/sync.out"
	measure_offset || { result 1 "$name" "no clock exchange with A"; return 1; }
	SYNC_NS=$O_NS
	# the step did what the case asks: B - A within SYNC_TOL_MS of SKEW
	if [ $((O_MS - skew)) -gt "$SYNC_TOL_MS" ] || [ $((skew - O_MS)) -gt "$SYNC_TOL_MS" ]; then
		result 1 "$name" "after the step B's clock is $O_MS ms from A's, not $skew"
		send "failed $name"
		return 1
	fi
	t0=$(now_ms)
	if ! qemu_start "dst-$name" "$2" "$3" -S -incoming "tcp:0:$MIG_PORT"; then
		result 1 "$name" "the destination did not start"
		send "failed $name"
		return 1
	fi
	send "incoming $name" || return 1
	dest_migrated "$name" "$check" "$t0"
	qemu_running && { echo quit >&9; qemu_quit; }
	ROW_EXTRA=
	send "finished $name"
}

# dest_migrated NAME CHECK T0: the destination's half, from A's message
# on; the case's result.
dest_migrated() {
	if ! expect migrated "$1" "$((MIGRATE_TIMEOUT + 60))"; then
		diagnostics
		result 1 "$1" "A's migration failed"
		return
	fi
	# A's stop (A's clock) and the source's offsets
	# shellcheck disable=SC2086 # its words
	set -- "$1" "$2" "$3" $MSG_REST
	T_STOP_A=$4
	SRC_OFFSETS=$5
	if ! wait_loaded "$1" "$3"; then
		diagnostics
		result 1 "$1" "the destination did not load"
		return
	fi
	measure_offset || { result 1 "$1" "no clock exchange with A"; return; }
	# A's stop on B's clock: the downtime is counted on A's timeline
	T_STOP=$((T_STOP_A + O_MS))
	resume_vm "$TARGET_DOWNTIME_MS" || { result 1 "$1" "cont failed"; return; }
	ROW_EXTRA="hosts_offset_ms=$(awk -v o="$O_NS" 'BEGIN { printf "%.3f", o / 1e6 }') offset_err_us=$(awk -v e="$O_ERR_NS" 'BEGIN { printf "%.1f", e / 1e3 }') offset_at_sync_ms=$(awk -v o="$SYNC_NS" 'BEGIN { printf "%.3f", o / 1e6 }')"
	case $2 in
	behind)
		# nothing counted: the TSC's error against the hosts' clocks is
		# minus their gap, the downtime plus the offset
		finish_2host "$1" precise "$(((-DOWNTIME_MS - O_MS) * 1000000))" "$CAP_TOL_NS" \
			"$FUTURE_RE" ;;
	1) finish_2host "$1" precise 0 "$TOL_NS" ;;
	*) finish_2host "$1" legacy - - ;;
	esac
}

# finish_2host NAME METHOD EXPECT_NS TOL_NS [WARNING_RE]: the report, the
# row with the TSC's error on A's timeline, the result.  EXPECT_NS "-":
# informational only.
finish_2host() {
	if ! report; then
		result 1 "$1" "no report from the guest"
		return
	fi
	if [ "$3" = - ]; then
		figures=$(analyse "$W/round.$((ROUND - 1))")
	else
		figures=$(analyse "$W/round.$((ROUND - 1))" "$3" "$4")
	fi
	if [ -n "${5:-}" ] && ! printf '%s\n' "$CONT_OUT" | cat - "$QERR" | grep -q "$5"; then
		figures="$figures
QEMU did not warn (expected: $5)"
	elif [ -z "${5:-}" ] && printf '%s\n' "$CONT_OUT" | cat - "$QERR" | grep -q "$FUTURE_RE"; then
		figures="$figures
QEMU warned of a timestamp in the future: $(printf '%s\n' "$CONT_OUT" | cat - "$QERR" | grep -m 1 "$FUTURE_RE")"
	fi
	# the gap the guest measured is the migration's
	gap_bad=$(awk -v e="$((DOWNTIME_MS * 1000000 + O_NS))" -v lo="$GAP_MIN_MS" -v hi="$GAP_MAX_MS" '
		/cpu=/ { for (i = 1; i <= NF; i++) if ($i ~ /^gap_host_ns=/) {
			d = (substr($i, 13) - e) / 1e6
			if (d < lo || d > hi) printf "the guest saw a host clock gap %.0f ms off the downtime plus the offset (window %d..%d ms): not the migration\n", d, lo, hi } }' \
		"$W/round.$((ROUND - 1))")
	[ -z "$gap_bad" ] || figures="$figures
$gap_bad"
	# the TSC's error against the true time: its error against the hosts'
	# clocks plus the offset
	true_err=$(awk '/tsc_err_ns=/ { for (i = 1; i <= NF; i++) if ($i ~ /^tsc_err_ns=/) { v = substr($i, 12); l = l (l == "" ? "" : ",") sprintf("%.1f", (v + o) / 1e3) } } END { print l == "" ? "-" : l }' \
		o="$O_NS" "$W/round.$((ROUND - 1))")
	ROW_EXTRA="$ROW_EXTRA tsc_err_true_us=$true_err"
	row "$1" "$2" "$(echo "$figures" | head -n 1)"
	problems=$(echo "$figures" | sed 1d | grep -v '^$')
	if [ "$3" != - ]; then
		sp=$(spread "$DST_OFFSETS")
		[ "$sp" = 0 ] || problems="destination tsc-offsets differ: $DST_OFFSETS (spread $sp)
$problems"
	fi
	problems=$(echo "$problems" | grep -v '^$')
	if [ "$3" = - ]; then
		[ -n "$problems" ] && echo "$problems" | sed 's/^/# e2e: (informational) /'
		result 0 "$1"
	elif [ -n "$problems" ]; then
		echo "$problems" | sed 's/^/# e2e: check failed: /'
		result 1 "$1" "$(echo "$problems" | head -n 1)"
	else
		result 0 "$1"
	fi
}

dest_main() {
	PEER=$IP_A
	each_case dest_case || lost_peer A ""
}

main_2host() {
	ROLE=$(sed -n 's/.*e2e\.host=\([ab]\).*/\1/p' /proc/cmdline)
	# shellcheck disable=SC2034 # finish_test reads it
	t_start=$(now_ms)
	echo "TAP version 13"
	case $ROLE in
	a) echo "1..$((NR_2HOST + 1))" ;;
	b) echo "1..$((NR_2HOST + 1))" ;;
	*) echo "1..0 # SKIP no e2e.host=a|b on the kernel command line"; return 0 ;;
	esac
	setup
	say "host $ROLE: $(dmesg | grep -m 1 -E 'tsc: Refined TSC|tsc: Detected' | sed 's/^\[[ 0-9.]*\] //')"
	if [ "$ROLE" = a ]; then
		net_up "$IP_A" || BROKEN="no network"
		source_main
	else
		net_up "$IP_B" || BROKEN="no network"
		dest_main
	fi
	finish_test
}

main_2host
