// SPDX-License-Identifier: GPL-2.0
/*
 * tsc_clock_steps: the cases of KVM_GET_TSC_STATE and KVM_SET_TSC_STATE
 * that step the host's clocks, in KTAP.  They live in the harness, not in
 * the upstream selftest (tsc_state_test), because they set CLOCK_REALTIME
 * and the kernel's TAI offset, which a selftest must not do to the machine
 * it runs on; `make check` runs them in the test VM as root.
 *
 *   realtime_step        4 vCPUs migrated with CLOCK_REALTIME stepped by
 *                        -1 s and +1 s between the first two GETs and back
 *                        between the first two SETs: with a shared
 *                        reference the vCPUs stay exactly in phase and the
 *                        step counts once; without one they end about 2 s
 *                        apart (both steps count).  Catches a call that
 *                        reads the clock although a reference was passed.
 *   clock_tai            the TAI offset set to 37 s: GET's nsec is
 *                        CLOCK_TAI, and a round trip through SET does not
 *                        move the TSC.  Catches the flag ignored on either
 *                        side (the TSC would move 37 s), or applied to one
 *                        of nsec and ref_nsec only.
 *   leap_second          CLOCK_REALTIME back 1 s and the TAI offset up 1 s
 *                        in one adjtimex() between save and restore: with
 *                        CLOCK_TAI timestamps the TSC ignores it, with
 *                        CLOCK_REALTIME it lands 1 s back.  Catches CLOCK_TAI
 *                        computed from anything but the kernel's TAI offset.
 *   kvmclock_clock_step  the realtime_step migration with kvmclock in the
 *                        state: KVM's kvmclock moves exactly as far as the
 *                        TSC (within 2 ns of pvclock rounding), whatever
 *                        the steps.  Catches kvmclock moved by another
 *                        reading of the clock than the TSC's.
 *
 * The clocks are put back at exit, failures included: CLOCK_REALTIME to
 * where it would be without the steps (CLOCK_MONOTONIC plus the offset
 * saved at start), and the TAI offset.  Needs root and KVM_CAP_PRECISE_TSC;
 * skips otherwise.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <sys/timex.h>

#define MINIVMM_NAME "tsc_clock_steps"
#include "minivmm.h"

#define NSEC		1000000000ll
#define NR_VCPUS	4
#define SAVED_TSC	(1ull << 40)	/* far from 0 and from a wrap */
#define KVMCLOCK_BASE_NS (1000 * NSEC)
#define KVMCLOCK_MAX_ERROR_NS 2
#define TAI_OFFSET_S	37

static int case_num, failures;
static char why[256];
static int64_t saved_real_minus_mono;
static int saved_tai = -1;

static void __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
	va_list ap;

	if (why[0])
		return;		/* the first failure of a case explains it */
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
}

static void report(const char *name)
{
	case_num++;
	if (why[0]) {
		printf("# %s\nnot ok %d %s\n", why, case_num, name);
		failures++;
	} else {
		printf("ok %d %s\n", case_num, name);
	}
	why[0] = 0;
}

static int get_tai_offset(void)
{
	struct timex tx = { .modes = 0 };

	if (adjtimex(&tx) < 0)
		die("adjtimex: %s", strerror(errno));
	return tx.tai;
}

static void set_tai_offset(int tai)
{
	struct timex tx = { .modes = ADJ_TAI, .constant = tai };

	if (adjtimex(&tx) < 0)
		die("adjtimex(ADJ_TAI %d): %s", tai, strerror(errno));
}

/* Step CLOCK_REALTIME by exactly @ns (no read-modify-write race). */
static void step_realtime(int64_t ns)
{
	int64_t sec = ns / NSEC, nsec = ns % NSEC;
	struct timex tx = { .modes = ADJ_SETOFFSET | ADJ_NANO };

	if (nsec < 0) {
		sec--;
		nsec += NSEC;
	}
	tx.time.tv_sec = sec;
	tx.time.tv_usec = nsec;
	if (adjtimex(&tx) < 0)
		die("adjtimex(ADJ_SETOFFSET %+" PRId64 " ns): %s", ns, strerror(errno));
}

static void restore_clocks(void)
{
	uint64_t ns = now_ns(CLOCK_MONOTONIC) + saved_real_minus_mono;
	struct timespec ts = { .tv_sec = ns / NSEC, .tv_nsec = ns % NSEC };
	struct timex tx = { .modes = ADJ_TAI, .constant = saved_tai };

	if (saved_tai < 0)
		return;
	if (clock_settime(CLOCK_REALTIME, &ts) || adjtimex(&tx) < 0)
		fprintf(stderr, "# could not put the clocks back: %s\n", strerror(errno));
}

static uint64_t ns_to_cycles(uint64_t ns)
{
	return (unsigned __int128)ns * tsc_khz / 1000000;
}

static int64_t ns_to_cycles_signed(int64_t ns)
{
	return ns < 0 ? -(int64_t)ns_to_cycles(-ns) : (int64_t)ns_to_cycles(ns);
}

static int64_t cycles_to_ns(int64_t cycles)
{
	return (__int128)cycles * 1000000 / (int64_t)tsc_khz;
}

/*
 * How far a restored TSC may be from the ideal after @ns of elapsed time:
 * the guest frequency is the clocksource's to 250 ppm (KVM's tolerance),
 * plus 1 us of rounding and clock reads.
 */
static int64_t tolerance(int64_t ns)
{
	return ns_to_cycles(1000 + (ns < 0 ? -ns : ns) / 4000);
}

static int64_t abs64(int64_t v)
{
	return v < 0 ? -v : v;
}

/* A VM whose kvmclock is far enough from 0 to be moved back. */
static void create_clock_vm(struct vm *vm, int nr_vcpus)
{
	struct kvm_clock_data clock = { .clock = KVMCLOCK_BASE_NS };

	create_vm(vm, nr_vcpus, 0);
	xioctl(vm->fd, KVM_SET_CLOCK, &clock, "KVM_SET_CLOCK");
}

/* GET on vCPU @i at @ref's reference (NULL: a fresh one), in @clock_flag's clock. */
static struct kvm_tsc_state get_at(struct vm *vm, int i, const struct kvm_tsc_state *ref,
				   uint32_t clock_flag)
{
	struct kvm_tsc_state st = { .flags = clock_flag };

	if (ref) {
		st.flags |= KVM_TSC_STATE_REFERENCE_VALID;
		st.ref_nsec = ref->ref_nsec;
		st.ref_host_tsc = ref->ref_host_tsc;
	}
	xioctl(vm->vcpu_fd[i], KVM_GET_TSC_STATE, &st, "KVM_GET_TSC_STATE");
	return st;
}

/* SET @saved on vCPU @i at @ref's reference (NULL: a fresh one); what SET wrote back. */
static struct kvm_tsc_state set_at(struct vm *vm, int i, const struct kvm_tsc_state *saved,
				   const struct kvm_tsc_state *ref)
{
	struct kvm_tsc_state st = *saved;

	st.flags &= ~KVM_TSC_STATE_REFERENCE_VALID;
	st.ref_nsec = 0;
	st.ref_host_tsc = 0;
	if (ref) {
		st.flags |= KVM_TSC_STATE_REFERENCE_VALID;
		st.ref_nsec = ref->ref_nsec;
		st.ref_host_tsc = ref->ref_host_tsc;
	}
	xioctl(vm->vcpu_fd[i], KVM_SET_TSC_STATE, &st, "KVM_SET_TSC_STATE");
	return st;
}

struct migration {
	int64_t skew;		/* cycles: the largest destination offset difference */
	int64_t error;		/* cycles: vCPU 0's destination offset - the source's */
	int64_t kvmclock;	/* ns: kvmclock's move less the TSC's, at the references */
};

/*
 * Migrate NR_VCPUS vCPUs 10 ms apart, stepping CLOCK_REALTIME by @step_ns
 * between the first two GETs and back between the first two SETs; the
 * vCPUs run between the calls.  With @shared the calls of a side share its
 * first call's reference.  Both VMs run on this host's TSC, so the ideal
 * destination offsets are the source's.
 */
static struct migration migrate(int64_t step_ns, bool shared)
{
	struct kvm_tsc_state saved[NR_VCPUS], ref = { 0 }, now;
	struct migration m = { 0 };
	struct vm src, dst;
	int i;

	create_clock_vm(&src, NR_VCPUS);
	for (i = 0; i < NR_VCPUS; i++) {
		set_offset(&src, i, SAVED_TSC);
		guest_read_tsc(&src, i);
	}
	for (i = 0; i < NR_VCPUS; i++) {
		if (i == 1)
			step_realtime(step_ns);
		if (i)
			sleep_ms(10);
		saved[i] = get_at(&src, i, shared && i ? &saved[0] : NULL, 0);
		guest_read_tsc(&src, i);
	}
	create_clock_vm(&dst, NR_VCPUS);
	for (i = 0; i < NR_VCPUS; i++)
		set_offset(&dst, i, (uint64_t)i * NSEC);	/* out of sync before the restore */
	for (i = 0; i < NR_VCPUS; i++) {
		struct kvm_tsc_state got;

		if (i == 1)
			step_realtime(-step_ns);
		if (i)
			sleep_ms(10);
		got = set_at(&dst, i, &saved[i], shared && i ? &ref : NULL);
		if (!i)
			ref = got;
		guest_read_tsc(&dst, i);
	}
	for (i = 0; i < NR_VCPUS; i++) {
		int64_t skew = (int64_t)(get_offset(&dst, i) - get_offset(&dst, 0));

		if (abs64(skew) > abs64(m.skew))
			m.skew = skew;
	}
	m.error = (int64_t)(get_offset(&dst, 0) - SAVED_TSC);
	if (saved[0].flags & KVM_TSC_STATE_KVMCLOCK_VALID) {
		now = get_at(&dst, 0, &ref, 0);
		m.kvmclock = (int64_t)(now.kvmclock_ns - saved[0].kvmclock_ns) -
			     cycles_to_ns((int64_t)(now.tsc - saved[0].tsc));
	}
	printf("# step %+" PRId64 " ms, %s reference: skew %" PRId64 " cycles, error %+" PRId64
	       " ns, kvmclock vs TSC %+" PRId64 " ns\n", step_ns / 1000000,
	       shared ? "shared" : "fresh", m.skew, cycles_to_ns(m.error), m.kvmclock);
	destroy_vm(&dst);
	destroy_vm(&src);
	return m;
}

static void realtime_step(void)
{
	int64_t step, two_steps = ns_to_cycles(2 * NSEC);
	struct migration m;

	for (step = -NSEC; step <= NSEC; step += 2 * NSEC) {
		m = migrate(step, true);
		if (m.skew)
			fail("step %+" PRId64 " ns, shared reference: offsets %" PRId64
			     " cycles apart", step, m.skew);
		/* The source's and the destination's references straddle one step. */
		if (abs64(m.error - ns_to_cycles_signed(step)) > tolerance(NSEC))
			fail("step %+" PRId64 " ns, shared reference: vCPU 0 %+" PRId64
			     " cycles off, expected the step", step, m.error);
		m = migrate(step, false);
		if (abs64(abs64(m.skew) - two_steps) > tolerance(4 * NSEC))
			fail("step %+" PRId64 " ns, fresh references: skew %" PRId64
			     " cycles, expected about %" PRId64, step, m.skew, two_steps);
	}
}

static void kvmclock_clock_step(void)
{
	int64_t step;
	struct migration m;

	for (step = -NSEC; step <= NSEC; step += 2 * NSEC) {
		m = migrate(step, true);
		if (abs64(m.kvmclock) > KVMCLOCK_MAX_ERROR_NS)
			fail("step %+" PRId64 " ns: kvmclock moved %+" PRId64
			     " ns more than the TSC", step, m.kvmclock);
	}
}

static void clock_tai(void)
{
	struct kvm_tsc_state saved, restored;
	uint64_t t0, t1, offset;
	int64_t moved;
	struct vm vm;

	set_tai_offset(TAI_OFFSET_S);
	create_clock_vm(&vm, 1);
	offset = get_offset(&vm, 0);
	t0 = now_ns(CLOCK_TAI);
	saved = get_at(&vm, 0, NULL, KVM_TSC_STATE_CLOCK_TAI);
	t1 = now_ns(CLOCK_TAI);
	if (!(saved.flags & KVM_TSC_STATE_CLOCK_TAI))
		fail("GET did not report CLOCK_TAI");
	if (saved.nsec < t0 || saved.nsec > t1 || saved.ref_nsec != saved.nsec)
		fail("CLOCK_TAI nsec %llu (ref_nsec %llu) outside [%" PRIu64 ", %" PRIu64 "]",
		     saved.nsec, saved.ref_nsec, t0, t1);
	if (saved.nsec < now_ns(CLOCK_REALTIME) + (TAI_OFFSET_S - 1) * NSEC)
		fail("nsec %llu is not %d s ahead of CLOCK_REALTIME", saved.nsec, TAI_OFFSET_S);

	/* Restored at once on the same VM: the TSC does not move. */
	restored = set_at(&vm, 0, &saved, NULL);
	if (!(restored.flags & KVM_TSC_STATE_CLOCK_TAI))
		fail("SET lost CLOCK_TAI");
	if (restored.ref_nsec < t1)
		fail("SET's reference %llu is not CLOCK_TAI (>= %" PRIu64 ")",
		     restored.ref_nsec, t1);
	moved = (int64_t)(get_offset(&vm, 0) - offset);
	if (abs64(moved) > tolerance(NSEC))
		fail("a CLOCK_TAI round trip moved the TSC %+" PRId64 " cycles", moved);
	printf("# CLOCK_TAI round trip (TAI offset %d s): the TSC moved %+" PRId64 " cycles\n",
	       TAI_OFFSET_S, moved);
	destroy_vm(&vm);
}

/* Save, a leap second (realtime back 1 s, TAI offset + 1 s), restore: the error. */
static int64_t migrate_across_leap(uint32_t clock_flag)
{
	int tai = get_tai_offset();
	struct timex leap = { .modes = ADJ_SETOFFSET | ADJ_NANO | ADJ_TAI,
			      .time = { .tv_sec = -1 }, .constant = tai + 1 };
	struct timex undo = { .modes = ADJ_SETOFFSET | ADJ_NANO | ADJ_TAI,
			      .time = { .tv_sec = 1 }, .constant = tai };
	uint64_t tai0, mono0, real0;
	struct kvm_tsc_state saved;
	struct vm src, dst;
	int64_t error;

	create_clock_vm(&src, 1);
	set_offset(&src, 0, SAVED_TSC);
	guest_read_tsc(&src, 0);
	saved = get_at(&src, 0, NULL, clock_flag);

	tai0 = now_ns(CLOCK_TAI);
	real0 = now_ns(CLOCK_REALTIME);
	mono0 = now_ns(CLOCK_MONOTONIC);
	if (adjtimex(&leap) < 0)
		die("adjtimex(leap second): %s", strerror(errno));
	if (abs64((int64_t)(now_ns(CLOCK_TAI) - tai0) - (int64_t)(now_ns(CLOCK_MONOTONIC) - mono0)) >
	    10000000)
		fail("CLOCK_TAI did not run on across the leap second");
	if (now_ns(CLOCK_REALTIME) >= real0)
		fail("CLOCK_REALTIME did not step back");

	create_clock_vm(&dst, 1);
	set_at(&dst, 0, &saved, NULL);
	error = (int64_t)(get_offset(&dst, 0) - get_offset(&src, 0));
	if (adjtimex(&undo) < 0)
		die("adjtimex(undo the leap second): %s", strerror(errno));
	destroy_vm(&dst);
	destroy_vm(&src);
	return error;
}

static void leap_second(void)
{
	int64_t tai_error, real_error;

	set_tai_offset(TAI_OFFSET_S);
	tai_error = migrate_across_leap(KVM_TSC_STATE_CLOCK_TAI);
	real_error = migrate_across_leap(0);
	printf("# leap second: CLOCK_TAI error %+" PRId64 " ns, CLOCK_REALTIME error %+" PRId64
	       " ns\n", cycles_to_ns(tai_error), cycles_to_ns(real_error));
	if (abs64(tai_error) > tolerance(NSEC))
		fail("CLOCK_TAI: %+" PRId64 " cycles off", tai_error);
	if (abs64(real_error - ns_to_cycles_signed(-NSEC)) > tolerance(NSEC))
		fail("CLOCK_REALTIME: %+" PRId64 " cycles off, expected 1 s back", real_error);
}

static const struct {
	const char *name;
	void (*fn)(void);
} cases[] = {
	{ "realtime_step", realtime_step },
	{ "clock_tai", clock_tai },
	{ "leap_second", leap_second },
	{ "kvmclock_clock_step", kvmclock_clock_step },
};

int main(void)
{
	const char *skip = NULL;
	struct vm probe;
	unsigned int i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n");
	open_kvm();
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_PRECISE_TSC) <= 0)
		skip = "KVM_CAP_PRECISE_TSC not supported";
	else if (geteuid())
		skip = "needs root to step the host's clocks";
	if (skip) {
		printf("1..0 # SKIP %s\n", skip);
		return 4;
	}
	create_vm(&probe, 1, 0);
	tsc_khz = ioctl(probe.vcpu_fd[0], KVM_GET_TSC_KHZ, 0);
	destroy_vm(&probe);

	saved_real_minus_mono = (int64_t)(now_ns(CLOCK_REALTIME) - now_ns(CLOCK_MONOTONIC));
	saved_tai = get_tai_offset();
	atexit(restore_clocks);

	printf("1..%zu\n", sizeof(cases) / sizeof(cases[0]));
	printf("# guest TSC %u kHz; the clocks are put back at exit (TAI offset was %d s)\n",
	       tsc_khz, saved_tai);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cases[i].fn();
		restore_clocks();
		report(cases[i].name);
	}
	return failures ? 1 : 0;
}
