#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Pack a test set into an initramfs, boot it under QEMU (TCG), summarise.
set -euo pipefail
SCRIPT_NAME=boot
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<USAGE
usage: $0 SET_FILE [RUN_NAME]

Packs busybox, the KVM modules and the selftests named in SET_FILE (see
harness/sets/tsc.list for the format) into an initramfs, boots the kernel
in $KBUILD_DIR under qemu-system-x86_64 -accel tcg -cpu max, and
summarises the KTAP results with harness/ktap.py.

Logs, all in LOG_DIR ($LOG_DIR), named after RUN_NAME (default: the set
file's name): RUN.console.log (serial console), RUN.ktap.log (results
port), RUN.summary.txt, RUN.results.txt.

Environment:
  QEMU_TIMEOUT   seconds for the whole boot (default $QEMU_TIMEOUT)
  TEST_TIMEOUT   default per-test timeout inside the guest (default $TEST_TIMEOUT)
  QEMU_SMP       vCPUs of the test VM (default $QEMU_SMP)
  QEMU_MEM       memory of the test VM (default $QEMU_MEM)
  KERNEL_ARGS    extra kernel command line
  BOOT_SILENCE   seconds without output from the test VM after which its
                 vCPUs' registers are printed and an NMI panics it with
                 every CPU's backtrace (default: the set's longest test
                 timeout + 120; RUN.console.log.silence)
  KTAP_FLAGS     extra harness/ktap.py flags (--splats for the debug kernel)
  QEMU_EXTRA_ARGS
                 more arguments for the test VM's QEMU, split at blanks
                 (harness/e2e.sh 2host: its network device)
  EXTRA_INITRAMFS_DIR
                 a directory whose contents are copied into the initramfs
                 on top of the rest (harness/e2e.sh's payload)
USAGE
}

QEMU_TIMEOUT=${QEMU_TIMEOUT:-1800}
TEST_TIMEOUT=${TEST_TIMEOUT:-300}
QEMU_SMP=${QEMU_SMP:-4}
QEMU_MEM=${QEMU_MEM:-4G}
KERNEL_ARGS=${KERNEL_ARGS:-}
EXTRA_INITRAMFS_DIR=${EXTRA_INITRAMFS_DIR:-}
QEMU_EXTRA_ARGS=${QEMU_EXTRA_ARGS:-}
GUEST_DIR=$HARNESS_DIR/guest
BUSYBOX=${BUSYBOX:-/bin/busybox}

# build_static SRC OUT: a static binary against the work tree's headers
# and demo/minivmm.h.  Rebuilt when the sources are newer or the uAPI
# headers differ from the ones it was built with (OUT.uapi: the base's and
# the series' kernels share BUILD_DIR/guest).
build_static() {
	local src=$1 out=$2 dep stale=0 uapi
	uapi=$(cat "$KBUILD_DIR/usr/include/linux/kvm.h" "$KBUILD_DIR/usr/include/asm/kvm.h" | sha256sum)
	[ -x "$out" ] && [ "$(cat "$out.uapi" 2>/dev/null)" = "$uapi" ] || stale=1
	for dep in "$src" "$TOP_DIR/demo/minivmm.h"; do
		[ "$dep" -nt "$out" ] && stale=1
	done
	[ "$stale" = 1 ] || return 0
	run gcc -static -O2 -Wall -Wextra -Werror -pthread -I "$TOP_DIR/demo" \
		-isystem "$KBUILD_DIR/usr/include" -o "$out" "$src" ||
		die "$EXIT_SELFTESTS" "building $src failed"
	echo "$uapi" >"$out.uapi"
}

# Guest-side programs: the harness's helper, the demo VMM and its check.
build_helpers() {
	local out=$BUILD_DIR/guest
	mkdir -p "$out"
	build_static "$GUEST_DIR/kvm_tsc_khz.c" "$out/kvm_tsc_khz"
	# Also on the unpatched base, where only its -b comparison runs.
	build_static "$GUEST_DIR/tsc_state_fuzz.c" "$out/tsc_state_fuzz"
	# Issue 19's livelock, deterministic; in no set until KVM is fixed.
	build_static "$GUEST_DIR/mmio_vectoring.c" "$out/mmio_vectoring"
	# The series' other programs need its uAPI.  An unpatched base (make
	# baseline) has none: build none of them, and leave no stale copy of a
	# patched build's to be packed.
	if ! grep -q KVM_CAP_PRECISE_TSC "$KBUILD_DIR/usr/include/linux/kvm.h"; then
		log "no KVM_CAP_PRECISE_TSC in $KBUILD_DIR/usr/include/linux/kvm.h (an unpatched base): the series' other guest programs are not built"
		rm -f "$out/tsc_migrate" "$out/tsc_clock_steps" "$out/tsc_migrate_check.sh"
		return 0
	fi
	build_static "$TOP_DIR/demo/tsc_migrate.c" "$out/tsc_migrate"
	build_static "$GUEST_DIR/tsc_clock_steps.c" "$out/tsc_clock_steps"
	install -m 0755 "$GUEST_DIR/tsc_migrate_check.sh" "$out/tsc_migrate_check.sh"
}

# stage_initramfs SET_FILE DIR: lay out the initramfs in DIR.
stage_initramfs() {
	local set=$1 dir=$2 name rest
	rm -rf "$dir"
	mkdir -p "$dir"/{bin,dev,proc,sys,tmp,lib/modules,tests}
	cp "$BUSYBOX" "$dir/bin/busybox"
	ln -s busybox "$dir/bin/sh"
	cp "$BUILD_DIR/guest/kvm_tsc_khz" "$dir/bin/"
	[ ! -x "$BUILD_DIR/guest/tsc_migrate" ] || cp "$BUILD_DIR/guest/tsc_migrate" "$dir/bin/"
	install -m 0755 "$GUEST_DIR/init" "$dir/init"
	make -s -C "$TREE_DIR" O="$KBUILD_DIR" ARCH=x86_64 INSTALL_MOD_PATH="$dir" \
		INSTALL_MOD_STRIP=1 modules_install >/dev/null ||
		die "$EXIT_BUILD" "modules_install failed; run harness/kernel.sh"
	: >"$dir/tests.list"
	local retries
	while read -r name rest; do
		case "$name" in ''|'#'*) continue ;; esac
		# NAME+N: run again up to N times after a failure (init says so).
		retries=
		if [[ "$name" =~ ^(.*)\+([0-9]+)$ ]]; then
			name=${BASH_REMATCH[1]} retries=+${BASH_REMATCH[2]}
		fi
		# NAME@BASE[,BASE...]: only on those kernel bases (LINUX_BASE).
		if [[ "$name" == *@* ]]; then
			if [[ ",${name#*@}," != *",$LINUX_BASE,"* ]]; then
				log "$(basename "$set"): ${name%%@*} runs only on ${name#*@}, not on $LINUX_BASE"
				continue
			fi
			name=${name%%@*}
		fi
		mkdir -p "$dir/tests/$(dirname "$name")"
		if [ -x "$SELFTEST_DIR/$name" ]; then
			cp "$SELFTEST_DIR/$name" "$dir/tests/$name"
		elif [[ "$name" == x86/* ]] && [ -x "$SELFTEST_DIR/x86_64/${name#x86/}" ]; then
			# Before 6.14 the x86 selftests were under x86_64/.
			cp "$SELFTEST_DIR/x86_64/${name#x86/}" "$dir/tests/$name"
		elif [ -x "$BUILD_DIR/guest/$name" ]; then
			cp "$BUILD_DIR/guest/$name" "$dir/tests/$name"
		else
			die "$EXIT_SELFTESTS" "$(basename "$set") names $name, which was not built in $SELFTEST_DIR or $BUILD_DIR/guest"
		fi
		echo "$name$retries $rest" >>"$dir/tests.list"
	done <"$set"
	if [ -n "$EXTRA_INITRAMFS_DIR" ]; then
		[ -d "$EXTRA_INITRAMFS_DIR" ] ||
			die "$EXIT_USAGE" "EXTRA_INITRAMFS_DIR $EXTRA_INITRAMFS_DIR is not a directory"
		cp -a "$EXTRA_INITRAMFS_DIR/." "$dir"/
	fi
}

pack_initramfs() {
	local dir=$1 out=$2
	(cd "$dir" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) >"$out"
}

# progress: KTAP result lines (top level and nested, behind "# ") as
# kunit.py prints them, one line per case.
progress() {
	awk '
	{
		line = $0; depth = 0
		while (substr(line, 1, 2) == "# ") { line = substr(line, 3); depth++ }
		if (line !~ /^(not )?ok [0-9]+/) next
		st = "PASSED"
		if (line ~ /^not ok/) { st = "FAILED"; sub(/^not ok [0-9]+ */, "", line) }
		else sub(/^ok [0-9]+ */, "", line)
		if (line ~ /# *SKIP/) st = "SKIPPED"
		sub(/^selftests: kvm: /, "", line)
		printf "%*s[%s] %s\n", 4 * depth, "", st, line
		fflush()
	}'
}

# follow_results KTAP_LOG STOP_FILE: print each case's result as the test
# VM writes it, until STOP_FILE exists.
follow_results() {
	local file=$1 stop=$2 seen=0 n
	while :; do
		if [ -f "$file" ]; then
			n=$(wc -l <"$file")
			if [ "$n" -gt "$seen" ]; then
				sed -n "$((seen + 1)),${n}p" "$file" | progress >&2
				seen=$n
			fi
		fi
		[ -f "$stop" ] && [ "$n" = "$(wc -l <"$file" 2>/dev/null || echo 0)" ] && break
		sleep 1
	done
}

# watch_silence CONSOLE_LOG KTAP_LOG MONITOR STOP_FILE: once neither log
# has grown for BOOT_SILENCE seconds, the L1's vCPU registers twice (from
# the test VM's QEMU monitor, RIPs named from System.map), then an NMI:
# the L1 panics on it (unknown_nmi_panic) with every CPU's backtrace and
# the tasks' states, and QEMU exits.  Everything goes to CONSOLE_LOG.silence
# and to stderr.  Once per boot.
watch_silence() {
	local console=$1 ktap=$2 mon=$3 stop=$4 last now out=$1.silence
	# (a background subshell under set -e and pipefail: no command here
	# may fail, or the watcher ends without a word)
	while [ ! -f "$stop" ]; do
		# every 10 s, but gone within 1 s of the end of the run
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			[ -f "$stop" ] && return
			sleep 1
		done
		now=$(date +%s)
		# newest of the two logs (QEMU creates them; one may not exist yet)
		last=$(stat -c %Y "$console" "$ktap" 2>/dev/null | sort -n | tail -n 1) || true
		[ -n "$last" ] && [ $((now - last)) -ge "$BOOT_SILENCE" ] || continue
		{
			echo "no output from the test VM for $((now - last)) s: its vCPUs, twice, then an NMI"
			python3 "$HARNESS_DIR/l0mon.py" "$mon" --symbols "$KBUILD_DIR/System.map" \
				"info registers -a"
			sleep 2
			python3 "$HARNESS_DIR/l0mon.py" "$mon" --symbols "$KBUILD_DIR/System.map" \
				"info registers -a" nmi
		} 2>&1 | { grep -aE '^(no output|l0mon|\(qemu\)|CPU#|RIP=)' || true; } | tee "$out" >&2 || true
		log "the test VM went silent: $out; its panic follows in $console"
		return
	done
}

# boot_qemu CPIO CONSOLE_LOG KTAP_LOG: returns QEMU's status (124: timeout).
boot_qemu() {
	local cpio=$1 console=$2 ktap=$3 mon=${3%.ktap.log}.mon
	local append="console=ttyS0 panic=-1 oops=panic tsc=reliable loglevel=6"
	# An NMI from the monitor (watch_silence) panics with every CPU's
	# backtrace and the tasks (7.x: panic_sys_info; 6.12: panic_print).
	append+=" unknown_nmi_panic"
	case $BASE_KERNELVERSION in
	6.*) append+=" panic_print=0x49" ;;
	*) append+=" panic_sys_info=tasks,locks,all_bt" ;;
	esac
	append+=" harness.timeout=$TEST_TIMEOUT $KERNEL_ARGS"
	rm -f "$console" "$console.qemu" "$console.silence" "$ktap" "$ktap.done" "$mon"
	follow_results "$ktap" "$ktap.done" &
	local follower=$!
	watch_silence "$console" "$ktap" "$mon" "$ktap.done" &
	local watcher=$!
	set +e
	# shellcheck disable=SC2086 # QEMU_EXTRA_ARGS is split at blanks
	run timeout --foreground -k 10 "$QEMU_TIMEOUT" \
		qemu-system-x86_64 -accel tcg -cpu max -smp "$QEMU_SMP" -m "$QEMU_MEM" \
		-nodefaults -nographic -no-reboot -monitor "unix:$mon,server=on,wait=off" \
		-kernel "$KBUILD_DIR/arch/x86/boot/bzImage" -initrd "$cpio" \
		-append "$append" \
		-serial "file:$console" -serial "file:$ktap" \
		-d cpu_reset,guest_errors -D "$console.qemu" $QEMU_EXTRA_ARGS </dev/null
	local status=$?
	touch "$ktap.done"
	wait "$follower"
	wait "$watcher"
	rm -f "$ktap.done" "$mon"
	set -e
	return "$status"
}

main() {
	case "${1:-}" in -h|--help|'') usage; [ -n "${1:-}" ]; exit $? ;; esac
	local set=$1 run_name=${2:-$(basename "${1%.list}")}
	[ -f "$set" ] || die "$EXIT_USAGE" "no set file $set"
	[ -f "$KBUILD_DIR/arch/x86/boot/bzImage" ] || die "$EXIT_BUILD" "no kernel; run harness/kernel.sh"
	ensure_dirs
	local start dir=$BUILD_DIR/initramfs/$run_name cpio=$BUILD_DIR/initramfs/$run_name.cpio
	local console=$LOG_DIR/$run_name.console.log ktap=$LOG_DIR/$run_name.ktap.log
	start=$(date +%s)
	build_helpers
	stage_initramfs "$set" "$dir"
	pack_initramfs "$dir" "$cpio"
	log "initramfs $cpio: $(du -h "$cpio" | cut -f1), $(grep -c . "$dir/tests.list") tests"
	stage_time initramfs "$start"

	start=$(date +%s)
	local qemu_status=0 timeout_flag=()
	# Silent for longer than any test's own timeout (each test prints its
	# result when it ends, killed or not) plus 2 minutes: stuck.
	BOOT_SILENCE=${BOOT_SILENCE:-$(awk -v d="$TEST_TIMEOUT" '
		{ t = ($2 == "" || $2 == "-") ? d : $2; if (t > m) m = t }
		END { print (m > d ? m : d) + 120 }' "$dir/tests.list")}
	boot_qemu "$cpio" "$console" "$ktap" || qemu_status=$?
	stage_time boot "$start"
	if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then
		log "QEMU killed after $QEMU_TIMEOUT s"
		timeout_flag=(--qemu-timeout)
	elif [ "$qemu_status" -ne 0 ]; then
		log "QEMU exited with status $qemu_status"
	fi
	# -no-reboot: a test VM that resets (a triple fault prints nothing in
	# it) ends QEMU with status 0.  QEMU's -d cpu_reset log says "Triple
	# fault" and has the CPU state; CPU 0 resets twice at power-on.
	if grep -q 'Triple fault' "$console.qemu" 2>/dev/null ||
	   [ "$(grep -c '^CPU Reset (CPU 0)' "$console.qemu" 2>/dev/null || true)" -gt 2 ]; then
		log "the test VM reset itself: $(grep -m1 'Triple fault' "$console.qemu" || echo 'CPU 0 reset'), CPU state in $console.qemu"
	fi
	log "logs: $console $ktap"
	[ ! -s "$console.silence" ] || timeout_flag+=(--silence "$console.silence")
	python3 "$HARNESS_DIR/ktap.py" --ktap "$ktap" --console "$console" \
		--summary "$LOG_DIR/$run_name.summary.txt" \
		--results "$LOG_DIR/$run_name.results.txt" "${timeout_flag[@]}" ${KTAP_FLAGS:-}
}

main "$@"
