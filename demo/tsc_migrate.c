// SPDX-License-Identifier: GPL-2.0
/*
 * tsc_migrate: a small VMM that migrates a multi-vCPU guest's TSC from a
 * source VM to a destination VM on this host, three ways, and measures
 * what each way leaves behind.  Plain KVM API, no library: the reference
 * code for a VMM developer.
 *
 *   legacy     KVM_GET_MSRS / KVM_SET_MSRS of IA32_TSC and IA32_TSC_ADJUST,
 *              what VMMs do today; kvmclock as QEMU 7.2 does it: KVM_GET_CLOCK
 *              before the vCPUs' saves, KVM_SET_CLOCK of that value
 *              (flags 0) after their restores
 *   upstream   KVM_GET_CLOCK (realtime + host TSC) and KVM_VCPU_TSC_OFFSET,
 *              the Linux 5.16+ recipe of Documentation/virt/kvm/devices/vcpu.rst
 *              (kvmclock: KVM_SET_CLOCK with KVM_CLOCK_REALTIME first)
 *   tsc-state  KVM_GET_TSC_STATE / KVM_SET_TSC_STATE with
 *              KVM_X86_QUIRK_TSC_HOST_ACCESS disabled, every vCPU of a side
 *              evaluated at one shared (clock, host TSC) reference: the one
 *              returned by the first vCPU's call; kvmclock restored with
 *              the TSC by the last vCPU's KVM_SET_TSC_STATE
 *              (KVM_TSC_STATE_KVMCLOCK_VALID), no KVM_SET_CLOCK
 *   rfc2020    (only with -m rfc2020) a userspace model of the 2020 RFC's
 *              per-vCPU algorithm: a fresh (CLOCK_REALTIME, host TSC) pair
 *              from KVM_GET_CLOCK for every vCPU's save and restore;
 *              kvmclock as legacy (the RFC left it to KVM_SET_CLOCK)
 *
 * The guest is a real-mode loop that reads its TSC and reports it with two
 * OUTs.  Source and destination run on the same host TSC, so the ideal
 * destination offset is exactly the source's: every error is measured
 * exactly, in cycles, from KVM_VCPU_TSC_OFFSET.  How far each way moves
 * kvmclock against the TSC is measured as KVM reports them: vCPU 0's
 * (TSC, kvmclock) pair from KVM_GET_TSC_STATE, which only reads, just
 * before the save and after the restored vCPUs have run.
 *
 * With --cost the program only measures what the save and the restore of
 * every vCPU cost each method: rounds of both, back to back, in VMs whose
 * vCPUs never run, and the median per-vCPU time.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>

#define MINIVMM_NAME "tsc_migrate"
#include "minivmm.h"


enum method { LEGACY, UPSTREAM, TSC_STATE, RFC2020, NR_METHODS };
static const char *const method_names[NR_METHODS] = {
	"legacy", "upstream", "tsc-state", "rfc2020"
};

struct options {
	int nr_vcpus;
	long downtime_ms;
	long save_stagger_ms;
	long restore_stagger_ms;
	long clock_step_ms;	/* CLOCK_REALTIME step between two restores */
	int rounds;		/* round-robin TSC reads after resume */
	bool methods[NR_METHODS];
	int cost_rounds;	/* --cost: rounds of save + restore, 0: off */
	bool tai;		/* tsc-state timestamps in CLOCK_TAI */
	bool csv;
	bool check;
};


struct result {
	bool ran;
	const char *skipped;
	int64_t skew;		/* max - min destination offset, cycles */
	int64_t error;		/* vCPU 0's destination offset - source offset */
	bool tsc_stable;
	int violations;
	double save_us, restore_us;	/* per vCPU, ioctls only; --cost: medians */
	double save_q1, save_q3, restore_q1, restore_q3;	/* --cost: quartiles */
	int calls;		/* --cost: saves (and restores) per round and vCPU */
	bool has_kvmclock;	/* KVM_GET_TSC_STATE reported kvmclock on both sides */
	int64_t kvmclock_tsc;	/* kvmclock's move minus the TSC's, ns, after the vCPUs ran */
	int64_t kvmclock_tsc_prerun;	/* the same, before they ran */
	int64_t tsc_move_ns;	/* the TSC's move, ns, after the vCPUs ran */
};


struct msrs2 {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[2];
};

/* What a method saves on the source, per VM and per vCPU. */
struct saved {
	struct msrs2 msrs[MAX_VCPUS];			/* legacy */
	struct kvm_clock_data clock;			/* legacy, upstream, rfc2020 */
	uint64_t offset[MAX_VCPUS];			/* upstream, rfc2020 */
	struct kvm_clock_data pair[MAX_VCPUS];		/* rfc2020 */
	struct kvm_tsc_state state[MAX_VCPUS];		/* tsc-state */
};

/* Die with a hint when a shared reference has gone stale between vCPUs. */
static void tsc_state_ioctl(struct vm *vm, int i, unsigned long req, struct kvm_tsc_state *st)
{
	const char *name = req == KVM_GET_TSC_STATE ? "KVM_GET_TSC_STATE" : "KVM_SET_TSC_STATE";

	if (!ioctl(vm->vcpu_fd[i], req, st))
		return;
	if (errno == ESTALE)
		die("%s on vCPU %d: vCPU 0's reference is older than KVM accepts (10 s):"
		    " the staggers are too long for tsc-state's shared reference", name, i);
	die("%s on vCPU %d: %s", name, i, strerror(errno));
}

/* The time a save or restore spends in ioctls: its staggers and clock steps left out. */
struct stopwatch {
	uint64_t start, busy;
};

static void stopwatch_start(struct stopwatch *w)
{
	w->start = now_ns(CLOCK_MONOTONIC);
}

static void stopwatch_stop(struct stopwatch *w)
{
	w->busy += now_ns(CLOCK_MONOTONIC) - w->start;
}

/* Save every vCPU of @src into @s; returns the ns spent in ioctls. */
static uint64_t save(enum method m, struct vm *src, struct saved *s, const struct options *o)
{
	struct stopwatch w = { 0 };
	int i;

	stopwatch_start(&w);
	/* legacy and rfc2020: kvmclock when the VM stops, as QEMU saves it. */
	if (m == UPSTREAM || m == LEGACY || m == RFC2020)
		xioctl(src->fd, KVM_GET_CLOCK, &s->clock, "KVM_GET_CLOCK");
	for (i = 0; i < src->nr_vcpus; i++) {
		if (i && o->save_stagger_ms) {
			stopwatch_stop(&w);
			sleep_ms(o->save_stagger_ms);
			stopwatch_start(&w);
		}
		switch (m) {
		case LEGACY:
			s->msrs[i].hdr.nmsrs = 2;
			s->msrs[i].e[0].index = MSR_IA32_TSC;
			s->msrs[i].e[1].index = MSR_IA32_TSC_ADJUST;
			if (ioctl(src->vcpu_fd[i], KVM_GET_MSRS, &s->msrs[i]) != 2)
				die("KVM_GET_MSRS: %s", strerror(errno));
			break;
		case UPSTREAM:
			s->offset[i] = get_offset(src, i);
			break;
		case TSC_STATE:
			/*
			 * vCPU 0 at a fresh reference, every other vCPU at vCPU 0's:
			 * all saved at one instant, whatever the time between calls.
			 */
			memset(&s->state[i], 0, sizeof(s->state[i]));
			if (o->tai)
				s->state[i].flags = KVM_TSC_STATE_CLOCK_TAI;
			if (i) {
				s->state[i].flags |= KVM_TSC_STATE_REFERENCE_VALID;
				s->state[i].ref_nsec = s->state[0].ref_nsec;
				s->state[i].ref_host_tsc = s->state[0].ref_host_tsc;
			}
			tsc_state_ioctl(src, i, KVM_GET_TSC_STATE, &s->state[i]);
			break;
		case RFC2020:
			xioctl(src->fd, KVM_GET_CLOCK, &s->pair[i], "KVM_GET_CLOCK");
			s->offset[i] = get_offset(src, i);
			break;
		default:
			break;
		}
	}
	stopwatch_stop(&w);
	return w.busy;
}

/* Step CLOCK_REALTIME; the total of all steps is undone by restore_clock(). */
static int64_t clock_stepped_ns;

static void step_clock(int64_t ns)
{
	uint64_t t = now_ns(CLOCK_REALTIME) + ns;
	struct timespec ts = { t / 1000000000ull, t % 1000000000ull };

	if (clock_settime(CLOCK_REALTIME, &ts))
		die("clock_settime: %s (stepping the clock needs root)", strerror(errno));
	clock_stepped_ns += ns;
}

static void restore_clock(void)
{
	if (clock_stepped_ns)
		step_clock(-clock_stepped_ns);
}

/* Restore every vCPU of @dst from @s; returns the ns spent in ioctls. */
static uint64_t restore(enum method m, struct vm *dst, struct saved *s, const struct options *o)
{
	struct kvm_clock_data dst_clock = { 0 };
	struct kvm_tsc_state ref = { 0 };
	struct stopwatch w = { 0 };
	int i;

	stopwatch_start(&w);
	if (m == UPSTREAM) {
		/* Steps 4 and 5 of the vcpu.rst recipe: kvmclock, then the pair. */
		struct kvm_clock_data set = {
			.clock = s->clock.clock,
			.realtime = s->clock.realtime,
			.flags = KVM_CLOCK_REALTIME,
		};

		if (!(s->clock.flags & KVM_CLOCK_REALTIME) || !(s->clock.flags & KVM_CLOCK_HOST_TSC))
			die("upstream: KVM_GET_CLOCK on the source gave no (realtime, host TSC) pair");
		xioctl(dst->fd, KVM_SET_CLOCK, &set, "KVM_SET_CLOCK");
		xioctl(dst->fd, KVM_GET_CLOCK, &dst_clock, "KVM_GET_CLOCK");
		if (!(dst_clock.flags & KVM_CLOCK_HOST_TSC))
			die("upstream: KVM_GET_CLOCK on the destination gave no host TSC");
	}
	for (i = 0; i < dst->nr_vcpus; i++) {
		if (i && (o->restore_stagger_ms || (i == 1 && o->clock_step_ms))) {
			stopwatch_stop(&w);
			sleep_ms(o->restore_stagger_ms);
			if (i == 1 && o->clock_step_ms)
				step_clock(o->clock_step_ms * 1000000);
			stopwatch_start(&w);
		}
		switch (m) {
		case LEGACY:
			if (ioctl(dst->vcpu_fd[i], KVM_SET_MSRS, &s->msrs[i]) != 2)
				die("KVM_SET_MSRS: %s", strerror(errno));
			break;
		case UPSTREAM: {
			/* Step 6: ofs_dst = ofs_src - (guest_src - guest_dest) * freq + (tsc_src - tsc_dest) */
			int64_t dt = (int64_t)(dst_clock.clock - s->clock.clock);
			int64_t cycles = (int64_t)((__int128)dt * tsc_khz / 1000000);

			set_offset(dst, i, s->offset[i] + cycles + (s->clock.host_tsc - dst_clock.host_tsc));
			break;
		}
		case TSC_STATE: {
			/*
			 * vCPU 0 at a fresh reference, which KVM writes back; every
			 * other vCPU at that one, so all are restored at one instant
			 * and keep their saved differences exactly.
			 */
			struct kvm_tsc_state st = s->state[i];

			st.flags &= ~KVM_TSC_STATE_REFERENCE_VALID;
			/*
			 * kvmclock is VM-wide and each setting updates every
			 * vCPU's: set it once, with the last vCPU's TSC, when
			 * every offset is in place.
			 */
			if (i != dst->nr_vcpus - 1)
				st.flags &= ~KVM_TSC_STATE_KVMCLOCK_VALID;
			if (i) {
				st.flags |= KVM_TSC_STATE_REFERENCE_VALID;
				st.ref_nsec = ref.ref_nsec;
				st.ref_host_tsc = ref.ref_host_tsc;
			}
			tsc_state_ioctl(dst, i, KVM_SET_TSC_STATE, &st);
			if (!i)
				ref = st;
			break;
		}
		case RFC2020: {
			/* tsc = saved TSC + cycles(now - then), each vCPU on its own clock read. */
			struct kvm_clock_data now;
			int64_t dt, cycles;
			uint64_t tsc;

			xioctl(dst->fd, KVM_GET_CLOCK, &now, "KVM_GET_CLOCK");
			if (!(now.flags & KVM_CLOCK_HOST_TSC) || !(s->pair[i].flags & KVM_CLOCK_HOST_TSC))
				die("rfc2020: KVM_GET_CLOCK gave no (realtime, host TSC) pair");
			dt = (int64_t)(now.realtime - s->pair[i].realtime);
			cycles = (int64_t)((__int128)dt * tsc_khz / 1000000);
			tsc = s->offset[i] + s->pair[i].host_tsc + cycles;
			set_offset(dst, i, tsc - now.host_tsc);
			break;
		}
		default:
			break;
		}
	}
	if (m == LEGACY || m == RFC2020) {
		/* kvmclock when the VM starts, as QEMU 7.2 restores it: the saved value. */
		struct kvm_clock_data set = { .clock = s->clock.clock };

		xioctl(dst->fd, KVM_SET_CLOCK, &set, "KVM_SET_CLOCK");
	}
	stopwatch_stop(&w);
	restore_clock();
	return w.busy;
}

/* Whether KVM_GET_TSC_STATE is there to read a VM's clocks with. */
static bool have_precise_tsc;

/* vCPU 0's TSC and the VM's kvmclock at one fresh reference; false without kvmclock. */
static bool read_clocks(struct vm *vm, uint64_t *tsc, uint64_t *kvmclock)
{
	struct kvm_tsc_state st = { 0 };

	if (!have_precise_tsc)
		return false;
	tsc_state_ioctl(vm, 0, KVM_GET_TSC_STATE, &st);
	if (!(st.flags & KVM_TSC_STATE_KVMCLOCK_VALID))
		return false;
	*tsc = st.tsc;
	*kvmclock = st.kvmclock_ns;
	return true;
}

/* Guest TSC cycles in ns at the guest frequency, exactly, rounded to nearest. */
static int64_t cycles_to_ns(int64_t cycles)
{
	__int128 c = cycles < 0 ? -(__int128)cycles : cycles;
	__int128 ns = (c * 1000000 + tsc_khz / 2) / tsc_khz;

	return (int64_t)(cycles < 0 ? -ns : ns);
}

/* How much more kvmclock moved than the TSC between two read_clocks(), in ns. */
static int64_t kvmclock_vs_tsc(uint64_t tsc_s, uint64_t clock_s, uint64_t tsc_d, uint64_t clock_d)
{
	return (int64_t)(clock_d - clock_s) - cycles_to_ns((int64_t)(tsc_d - tsc_s));
}

static void run_method(enum method m, const struct options *o, struct result *r)
{
	static struct saved s;
	uint64_t src_offset, t, min = UINT64_MAX, max = 0, last = 0;
	uint64_t tsc_s = 0, clock_s = 0, tsc_d, clock_d;
	struct vm src, dst;
	struct kvm_clock_data clock;
	int i, round;

	memset(r, 0, sizeof(*r));
	memset(&s, 0, sizeof(s));
	create_vm(&src, o->nr_vcpus, m == TSC_STATE ? VM_DISABLE_TSC_QUIRK : 0);
	for (i = 0; i < o->nr_vcpus; i++)
		guest_read_tsc(&src, i);		/* the source runs */
	src_offset = get_offset(&src, 0);

	r->has_kvmclock = read_clocks(&src, &tsc_s, &clock_s);
	r->save_us = save(m, &src, &s, o) / 1000.0 / o->nr_vcpus;

	sleep_ms(o->downtime_ms);

	create_vm(&dst, o->nr_vcpus, m == TSC_STATE ? VM_DISABLE_TSC_QUIRK : 0);
	if (m == RFC2020) {
		/* KVM_GET_CLOCK gives the pair only with the master clock on. */
		for (i = 0; i < o->nr_vcpus; i++)
			guest_read_tsc(&dst, i);
	}
	r->restore_us = restore(m, &dst, &s, o) / 1000.0 / o->nr_vcpus;
	if (r->has_kvmclock && read_clocks(&dst, &tsc_d, &clock_d))
		r->kvmclock_tsc_prerun = kvmclock_vs_tsc(tsc_s, clock_s, tsc_d, clock_d);
	else
		r->has_kvmclock = false;

	for (i = 0; i < o->nr_vcpus; i++) {
		uint64_t off = get_offset(&dst, i);

		min = off < min ? off : min;
		max = off > max ? off : max;
	}
	r->skew = (int64_t)(max - min);
	/* Same host TSC: the source's offset is the ideal one. */
	r->error = (int64_t)(get_offset(&dst, 0) - src_offset);

	/*
	 * Resume: round-robin reads; a read below an earlier one is a
	 * violation.  Once every vCPU has run (and taken any master clock
	 * update the restore left pending), kvmclock against the TSC again:
	 * what the guest sees.
	 */
	for (round = 0; round < (o->rounds ? o->rounds : 1); round++) {
		for (i = 0; i < o->nr_vcpus; i++) {
			t = guest_read_tsc(&dst, i);
			if (o->rounds && t < last)
				r->violations++;
			last = t > last ? t : last;
		}
		if (!round && r->has_kvmclock && read_clocks(&dst, &tsc_d, &clock_d)) {
			r->kvmclock_tsc = kvmclock_vs_tsc(tsc_s, clock_s, tsc_d, clock_d);
			r->tsc_move_ns = cycles_to_ns((int64_t)(tsc_d - tsc_s));
		}
	}
	xioctl(dst.fd, KVM_GET_CLOCK, &clock, "KVM_GET_CLOCK");
	r->tsc_stable = clock.flags & KVM_CLOCK_TSC_STABLE;
	r->ran = true;
	destroy_vm(&dst);
	destroy_vm(&src);
}

/*
 * KVM computes a VM's master clock, without which KVM_GET_CLOCK gives no
 * (realtime, host TSC) pair, when a vCPU first runs or on KVM_SET_CLOCK:
 * for VMs whose vCPUs never run, set the clock to its own value.
 */
static void start_master_clock(struct vm *vm, const char *method)
{
	struct kvm_clock_data clock = { 0 };

	xioctl(vm->fd, KVM_GET_CLOCK, &clock, "KVM_GET_CLOCK");
	clock = (struct kvm_clock_data) { .clock = clock.clock };
	xioctl(vm->fd, KVM_SET_CLOCK, &clock, "KVM_SET_CLOCK");
	xioctl(vm->fd, KVM_GET_CLOCK, &clock, "KVM_GET_CLOCK");
	if (!(clock.flags & KVM_CLOCK_HOST_TSC))
		die("%s: KVM_GET_CLOCK gives no host TSC (no master clock)", method);
}

/*
 * Whether kvmclock moved with the TSC: within 10 ns (the pvclock's rounding
 * on either side) plus 1 ns per second of the TSC's move (the pvclock
 * scale, 32 significant bits, against the exact guest frequency).
 */
static bool kvmclock_with_tsc(const struct result *r)
{
	int64_t bound = 10 + llabs(r->tsc_move_ns) / 1000000000;

	return !r->has_kvmclock || llabs(r->kvmclock_tsc) <= bound;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Quartiles of @n values (sorts them): @q[0] first, @q[1] median, @q[2] third. */
static void quartiles(double *v, int n, double q[3])
{
	int k;

	qsort(v, n, sizeof(*v), cmp_double);
	for (k = 0; k < 3; k++) {
		double pos = (n - 1) * (k + 1) / 4.0;
		int lo = (int)pos;

		q[k] = lo + 1 < n ? v[lo] + (pos - lo) * (v[lo + 1] - v[lo]) : v[lo];
	}
}

/* Every round saves (and restores) each vCPU at least this often. */
#define COST_CALLS_PER_ROUND	256

/*
 * --cost: rounds of saving every vCPU of a source VM and restoring them into
 * a destination VM, back to back, no downtime or stagger, vCPUs never run;
 * the median and quartiles over the rounds of the time per vCPU and call.
 */
static void measure_cost(enum method m, const struct options *o, struct result *r)
{
	static struct saved s;
	double *save_us = calloc(o->cost_rounds, sizeof(double));
	double *restore_us = calloc(o->cost_rounds, sizeof(double));
	int n = o->nr_vcpus, calls = (COST_CALLS_PER_ROUND + n - 1) / n, i, k;
	uint64_t min = UINT64_MAX, max = 0;
	struct vm src, dst;
	double q[3];

	memset(r, 0, sizeof(*r));
	memset(&s, 0, sizeof(s));
	create_vm(&src, n, m == TSC_STATE ? VM_DISABLE_TSC_QUIRK : 0);
	create_vm(&dst, n, m == TSC_STATE ? VM_DISABLE_TSC_QUIRK : 0);
	if (m == UPSTREAM || m == RFC2020)
		start_master_clock(&src, method_names[m]);
	if (m == RFC2020)
		start_master_clock(&dst, method_names[m]);
	for (k = 0; k < o->cost_rounds; k++) {
		uint64_t save_ns = 0, restore_ns = 0;

		for (i = 0; i < calls; i++)
			save_ns += save(m, &src, &s, o);
		for (i = 0; i < calls; i++)
			restore_ns += restore(m, &dst, &s, o);
		save_us[k] = save_ns / 1000.0 / ((double)n * calls);
		restore_us[k] = restore_ns / 1000.0 / ((double)n * calls);
	}
	quartiles(save_us, o->cost_rounds, q);
	r->save_q1 = q[0], r->save_us = q[1], r->save_q3 = q[2];
	quartiles(restore_us, o->cost_rounds, q);
	r->restore_q1 = q[0], r->restore_us = q[1], r->restore_q3 = q[2];
	r->calls = calls;
	for (i = 0; i < n; i++) {
		uint64_t off = get_offset(&dst, i);

		min = off < min ? off : min;
		max = off > max ? off : max;
	}
	r->skew = (int64_t)(max - min);
	r->ran = true;
	destroy_vm(&dst);
	destroy_vm(&src);
	free(save_us);
	free(restore_us);
}

static void print_costs(const struct options *o, struct result *res)
{
	double legacy_save = res[LEGACY].ran ? res[LEGACY].save_us : 0;
	double legacy_restore = res[LEGACY].ran ? res[LEGACY].restore_us : 0;
	int m;

	if (o->csv) {
		printf("cost:method,vcpus,rounds,calls,save_us,save_q1_us,save_q3_us,restore_us,restore_q1_us,restore_q3_us,skew_cycles\n");
		for (m = 0; m < NR_METHODS; m++) {
			const struct result *r = &res[m];

			if (!r->ran)
				continue;
			printf("cost:%s,%d,%d,%d,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%" PRId64 "\n",
			       method_names[m], o->nr_vcpus, o->cost_rounds, r->calls, r->save_us,
			       r->save_q1, r->save_q3, r->restore_us, r->restore_q1, r->restore_q3, r->skew);
		}
		return;
	}
	printf("%d vCPUs that never run, %d rounds of saving and restoring every vCPU %d times\n"
	       "back to back: median (interquartile range) per vCPU and call\n\n",
	       o->nr_vcpus, o->cost_rounds,
	       (COST_CALLS_PER_ROUND + o->nr_vcpus - 1) / o->nr_vcpus);
	printf("%-10s %14s %25s %25s\n", "method", "max skew", "save/vCPU", "restore/vCPU");
	printf("%-10s %14s %25s %25s\n", "", "(cycles)", "(us, IQR, x legacy)", "(us, IQR, x legacy)");
	for (m = 0; m < NR_METHODS; m++) {
		const struct result *r = &res[m];
		char save[48], rest[48];

		if (!o->methods[m])
			continue;
		if (!r->ran) {
			printf("%-10s skipped: %s\n", method_names[m], r->skipped);
			continue;
		}
		snprintf(save, sizeof(save), "%.1f (%.1f-%.1f) x%.2f", r->save_us, r->save_q1,
			 r->save_q3, legacy_save > 0 ? r->save_us / legacy_save : 0.0);
		snprintf(rest, sizeof(rest), "%.1f (%.1f-%.1f) x%.2f", r->restore_us, r->restore_q1,
			 r->restore_q3, legacy_restore > 0 ? r->restore_us / legacy_restore : 0.0);
		printf("%-10s %14" PRId64 " %25s %25s\n", method_names[m], r->skew, save, rest);
	}
}

static void print_results(const struct options *o, struct result *res)
{
	double legacy_save = res[LEGACY].ran ? res[LEGACY].save_us : 0;
	double legacy_restore = res[LEGACY].ran ? res[LEGACY].restore_us : 0;
	int m;

	if (o->csv) {
		printf("csv:method,vcpus,downtime_ms,save_stagger_ms,restore_stagger_ms,clock_step_ms,skew_cycles,error_us,tsc_stable,violations,save_us,restore_us,kvmclock_tsc_ns,kvmclock_tsc_prerun_ns\n");
		for (m = 0; m < NR_METHODS; m++) {
			char clk[48] = ",";

			if (!res[m].ran)
				continue;
			if (res[m].has_kvmclock)
				snprintf(clk, sizeof(clk), "%" PRId64 ",%" PRId64, res[m].kvmclock_tsc,
					 res[m].kvmclock_tsc_prerun);
			printf("csv:%s,%d,%ld,%ld,%ld,%ld,%" PRId64 ",%.3f,%d,%d,%.2f,%.2f,%s\n",
			       method_names[m], o->nr_vcpus, o->downtime_ms, o->save_stagger_ms,
			       o->restore_stagger_ms, o->clock_step_ms, res[m].skew, res[m].error * 1000.0 / tsc_khz,
			       res[m].tsc_stable, res[m].violations, res[m].save_us, res[m].restore_us, clk);
		}
		return;
	}
	printf("%d vCPUs, downtime %ld ms, %ld ms between per-vCPU saves, %ld ms between restores,\n"
	       "CLOCK_REALTIME step %ld ms between the first two restores, guest TSC %u kHz\n\n",
	       o->nr_vcpus, o->downtime_ms, o->save_stagger_ms, o->restore_stagger_ms,
	       o->clock_step_ms, tsc_khz);
	printf("%-10s %14s %14s %13s %11s %11s %15s %15s\n", "method", "max skew", "TSC error",
	       "kvmclock vs", "TSC_STABLE", "backwards", "save/vCPU", "restore/vCPU");
	printf("%-10s %14s %14s %13s %11s %11s %15s %15s\n", "", "(cycles)", "(us)", "TSC (ns)",
	       "", "reads", "(us, x legacy)", "(us, x legacy)");
	for (m = 0; m < NR_METHODS; m++) {
		char save[32], rest[32], clk[24] = "-";
		double err_us;

		if (!o->methods[m])
			continue;
		if (!res[m].ran) {
			printf("%-10s skipped: %s\n", method_names[m], res[m].skipped);
			continue;
		}
		snprintf(save, sizeof(save), "%.1f x%.1f", res[m].save_us,
			 legacy_save > 0 ? res[m].save_us / legacy_save : 0.0);
		snprintf(rest, sizeof(rest), "%.1f x%.1f", res[m].restore_us,
			 legacy_restore > 0 ? res[m].restore_us / legacy_restore : 0.0);
		err_us = res[m].error * 1000.0 / tsc_khz;
		if (res[m].has_kvmclock)
			snprintf(clk, sizeof(clk), "%" PRId64, res[m].kvmclock_tsc);
		printf("%-10s %14" PRId64 " %14.1f %13s %11s %11d %15s %15s\n", method_names[m],
		       res[m].skew, (err_us < 0.05 && err_us > -0.05) ? 0.0 : err_us, clk,
		       res[m].tsc_stable ? "yes" : "no", res[m].violations, save, rest);
	}
	printf("\nmax skew: spread of the destination vCPUs' TSC offsets (0: in phase);\n"
	       "TSC error: destination TSC minus the ideal (saved TSC + downtime);\n"
	       "kvmclock vs TSC: how much more the migration moved kvmclock than vCPU 0's\n"
	       "TSC (KVM_GET_TSC_STATE's pairs before the save and once the restored vCPUs\n"
	       "ran, the TSC's move in ns at the guest frequency; 0: the guest's kvmclock\n"
	       "still agrees with its TSC; -: no KVM_GET_TSC_STATE); kvmclock restored by\n"
	       "KVM_SET_CLOCK of the saved value, flags 0 (legacy, rfc2020: as QEMU 7.2),\n"
	       "KVM_SET_CLOCK with KVM_CLOCK_REALTIME (upstream), the last vCPU's\n"
	       "KVM_SET_TSC_STATE with KVM_TSC_STATE_KVMCLOCK_VALID (tsc-state);\n"
	       "backwards reads: guest TSC reads lower than an earlier read on another vCPU;\n"
	       "save/vCPU, restore/vCPU: time in ioctls per vCPU, staggers left out, one\n"
	       "run (noisy: --cost measures it).\n");
}

static void usage(void)
{
	printf("usage: tsc_migrate [options]\n"
	       "  -m, --method M      legacy, upstream, tsc-state, all (those three: the\n"
	       "                      default) or rfc2020 (a model of the 2020 RFC); repeatable\n"
	       "  -n, --vcpus N       vCPUs (1-%d, default 4)\n"
	       "  -d, --downtime MS   pause between save and restore (default 500)\n"
	       "  -s, --stagger MS    delay between per-vCPU calls (default 100)\n"
	       "  -S, --save-stagger MS, -R, --restore-stagger MS\n"
	       "                      the same, for saves or restores only\n"
	       "  -c, --clock-step MS step CLOCK_REALTIME by MS between the first two\n"
	       "                      restores, and back afterwards (needs root; default 0)\n"
	       "  -r, --rounds N      round-robin TSC reads after resume (default 100; with\n"
	       "                      0 every vCPU still runs once, for kvmclock vs TSC)\n"
	       "  -q, --quick         2 vCPUs, 100 ms downtime, 10 ms stagger, 20 rounds\n"
	       "  -t, --tai           tsc-state timestamps in CLOCK_TAI, not CLOCK_REALTIME\n"
	       "      --cost ROUNDS   only measure the cost: ROUNDS rounds (3-1000) of saving\n"
	       "                      and restoring every vCPU back to back, at least %d\n"
	       "                      calls of each per round, in VMs whose vCPUs never\n"
	       "                      run; prints the median per vCPU (no -d, -s, -c)\n"
	       "      --csv           CSV output\n"
	       "      --check         exit 1 unless tsc-state ends with 0-cycle skew,\n"
	       "                      TSC_STABLE, no backwards reads and kvmclock moved\n"
	       "                      with the TSC (within 10 ns + 1 ns/s; --cost: 0-cycle\n"
	       "                      skew)\n",
	       MAX_VCPUS, COST_CALLS_PER_ROUND);
}

static long parse_num(const char *s, const char *what, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi)
		usage_error("%s must be a number from %ld to %ld, not '%s'", what, lo, hi, s);
	return v;
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "method", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'n' },
		{ "downtime", required_argument, NULL, 'd' },
		{ "stagger", required_argument, NULL, 's' },
		{ "save-stagger", required_argument, NULL, 'S' },
		{ "restore-stagger", required_argument, NULL, 'R' },
		{ "clock-step", required_argument, NULL, 'c' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "quick", no_argument, NULL, 'q' },
		{ "tai", no_argument, NULL, 't' },
		{ "cost", required_argument, NULL, 'X' },
		{ "csv", no_argument, NULL, 'C' },
		{ "check", no_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	bool any_method = false, timed = false;
	int c, m;

	*o = (struct options) {
		.nr_vcpus = 4, .downtime_ms = 500, .rounds = 100,
		.save_stagger_ms = 100, .restore_stagger_ms = 100,
	};
	while ((c = getopt_long(argc, argv, "m:n:d:s:S:R:c:r:qth", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			any_method = true;
			if (!strcmp(optarg, "all")) {
				for (m = 0; m < RFC2020; m++)
					o->methods[m] = true;
				break;
			}
			for (m = 0; m < NR_METHODS; m++)
				if (!strcmp(optarg, method_names[m]))
					break;
			if (m == NR_METHODS)
				usage_error("unknown method '%s' (legacy, upstream, tsc-state, all, rfc2020)",
					    optarg);
			o->methods[m] = true;
			break;
		case 'n':
			o->nr_vcpus = parse_num(optarg, "--vcpus", 1, MAX_VCPUS);
			break;
		case 'd':
			timed = true;
			o->downtime_ms = parse_num(optarg, "--downtime", 0, 3600000);
			break;
		case 's':
			timed = true;
			o->save_stagger_ms = parse_num(optarg, "--stagger", 0, 60000);
			o->restore_stagger_ms = o->save_stagger_ms;
			break;
		case 'S':
			timed = true;
			o->save_stagger_ms = parse_num(optarg, "--save-stagger", 0, 60000);
			break;
		case 'R':
			timed = true;
			o->restore_stagger_ms = parse_num(optarg, "--restore-stagger", 0, 60000);
			break;
		case 'c':
			timed = true;
			o->clock_step_ms = parse_num(optarg, "--clock-step", -3600000, 3600000);
			break;
		case 'r':
			o->rounds = parse_num(optarg, "--rounds", 0, 1000000);
			break;
		case 'q':
			o->nr_vcpus = 2;
			o->downtime_ms = 100;
			o->save_stagger_ms = 10;
			o->restore_stagger_ms = 10;
			o->rounds = 20;
			break;
		case 't':
			o->tai = true;
			break;
		case 'X':
			o->cost_rounds = parse_num(optarg, "--cost", 3, 1000);
			break;
		case 'C':
			o->csv = true;
			break;
		case 'K':
			o->check = true;
			break;
		case 'h':
			usage();
			exit(0);
		default:
			usage_error("bad option");
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (o->cost_rounds && timed)
		usage_error("--cost saves and restores back to back: no -d, -s, -S, -R or -c");
	if (o->cost_rounds) {
		o->downtime_ms = 0;
		o->save_stagger_ms = 0;
		o->restore_stagger_ms = 0;
	}
	if (!any_method)
		for (m = 0; m < RFC2020; m++)
			o->methods[m] = true;
}

int main(int argc, char **argv)
{
	struct result res[NR_METHODS] = { 0 };
	struct options o;
	struct vm probe;
	int m, cap;

	parse_options(argc, argv, &o);
	setvbuf(stdout, NULL, _IOLBF, 0);

	open_kvm();
	create_vm(&probe, 1, 0);
	tsc_khz = ioctl(probe.vcpu_fd[0], KVM_GET_TSC_KHZ, 0);
	destroy_vm(&probe);
	if ((int)tsc_khz <= 0)
		die("KVM_GET_TSC_KHZ: no guest TSC frequency");

	cap = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_PRECISE_TSC);
	have_precise_tsc = cap > 0;
	if (cap <= 0)
		res[TSC_STATE].skipped = "this kernel has no KVM_CAP_PRECISE_TSC";
	else if (!(ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DISABLE_QUIRKS2) &
		   KVM_X86_QUIRK_TSC_HOST_ACCESS))
		res[TSC_STATE].skipped = "this kernel has no KVM_X86_QUIRK_TSC_HOST_ACCESS";

	for (m = 0; m < NR_METHODS; m++) {
		if (!o.methods[m] || res[m].skipped)
			continue;
		if (o.cost_rounds)
			measure_cost(m, &o, &res[m]);
		else
			run_method(m, &o, &res[m]);
	}
	if (o.cost_rounds)
		print_costs(&o, res);
	else
		print_results(&o, res);

	if (o.check) {
		const struct result *r = &res[TSC_STATE];

		if (!r->ran)
			die("--check: tsc-state did not run: %s", r->skipped ? r->skipped : "not selected");
		if (o.cost_rounds) {
			if (r->skew) {
				fprintf(stderr, "tsc_migrate: --check failed: tsc-state skew %" PRId64
					" cycles\n", r->skew);
				return 1;
			}
			printf("check: tsc-state skew 0 cycles\n");
			return 0;
		}
		if (r->skew || !r->tsc_stable || r->violations || !kvmclock_with_tsc(r)) {
			fprintf(stderr, "tsc_migrate: --check failed: tsc-state skew %" PRId64
				" cycles, TSC_STABLE %s, %d backwards reads, kvmclock vs TSC %" PRId64
				" ns\n", r->skew, r->tsc_stable ? "yes" : "no", r->violations,
				r->kvmclock_tsc);
			return 1;
		}
		printf("check: tsc-state skew 0 cycles, TSC_STABLE, no backwards reads, %s\n",
		       r->has_kvmclock ? "kvmclock moved with the TSC" : "no kvmclock to compare");
	}
	return 0;
}
