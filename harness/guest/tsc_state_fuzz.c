// SPDX-License-Identifier: GPL-2.0
/*
 * Bounded fuzz and concurrency tests of KVM_GET_TSC_STATE and
 * KVM_SET_TSC_STATE, in KTAP: hostile struct contents and references
 * (shared ones, forged ones, ones from the future or older than KVM's 10 s,
 * CLOCK_REALTIME and CLOCK_TAI mixed) on vCPUs in every state, checked
 * against a model of the ioctls' checks; an info-leak check; concurrent
 * GET/SET/MSR/clock ioctls while the vCPUs run and write IA32_TSC,
 * IA32_TSC_ADJUST, the TSC deadline and kvmclock's MSRs themselves; the
 * master clock race of a guest switching kvmclock MSRs under SETs;
 * CLOCK_REALTIME steps between calls; and fds closed under a thread that
 * is inside the ioctls.
 * Every call must return 0 or an errno the model allows; a failed call must
 * change nothing, neither the vCPU (TSC offset, IA32_TSC_ADJUST) nor the
 * caller's struct; a successful one must write back exactly the reference
 * it used and set exactly the offset that reference gives.  The PRNG seed
 * is printed; pass it back with -s to replay a run (-c picks cases).
 * Bounded by iteration counts; a watchdog (-w seconds, per case and vCPU
 * state) fails the run if a case does not finish, after sysrq-t and, with
 * -t, the last lines of a trace of KVM's and the hrtimer events.  Each
 * case runs in a child process; one that meets the emulator's recorded
 * corruption runs once more (on_bad_exit(), run_unit()).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/timex.h>
#include <sys/wait.h>

#define MINIVMM_NAME "tsc_state_fuzz"
#include "minivmm.h"

static int watchdog_s = 600;	/* -w */
static bool in_child;		/* a case's child process (run_unit()) */
static bool trace_kvm;		/* -t */
static bool base_ioctls;	/* -b */

/*
 * -b, for issue 19's comparison: the concurrency cases without the
 * series' ioctls (KVM_VCPU_TSC_OFFSET and KVM_SET_CLOCK instead, the
 * quirk left on), which also builds and runs on a kernel without them.
 */

#ifdef KVM_CAP_PRECISE_TSC
/* KVM's limits (arch/x86/kvm/x86.c), and the flags each ioctl takes. */
#define MAX_REF_AGE_S	10
#define MAX_ELAPSED_NS	(3650ull * 24 * 3600 * 1000000000ull)
#define ALL_FLAGS	(KVM_TSC_STATE_TIMESTAMP_VALID | KVM_TSC_STATE_TSC_ADJUST_VALID | \
			 KVM_TSC_STATE_REFERENCE_VALID | KVM_TSC_STATE_CLOCK_TAI)
#define GET_FLAGS	(KVM_TSC_STATE_REFERENCE_VALID | KVM_TSC_STATE_CLOCK_TAI)
#define NR_RESERVED	(sizeof(((struct kvm_tsc_state *)0)->reserved) / sizeof(__u64))

/* Flags of a later uAPI than the model's: never passed, let through on output. */
#ifdef KVM_TSC_STATE_KVMCLOCK_VALID
#define UNMODELLED_FLAGS KVM_TSC_STATE_KVMCLOCK_VALID
#else
#define UNMODELLED_FLAGS 0
#endif

/* Take out of a GET's output what the model does not know, to pass it to SET. */
static void strip_unmodelled(struct kvm_tsc_state *st)
{
	st->flags &= ~UNMODELLED_FLAGS;
#ifdef KVM_TSC_STATE_KVMCLOCK_VALID
	st->kvmclock_ns = 0;
#endif
}

#endif /* KVM_CAP_PRECISE_TSC */

/* CLOCK_TAI - CLOCK_REALTIME during the run, so that a mix-up shows. */
#define TAI_OFFSET_S	37

/* How far KVM's fresh reference may lie outside the caller's clock reads. */
#define CLOCK_SLACK_NS	1000000ull

static uint64_t rng_state;
static int iterations = 2000;
static int failures;
static const char *volatile running = "setup";	/* the case, for the watchdog */
static uint32_t host_khz;	/* KVM's default guest rate: the host TSC's */

/* xorshift64*, per thread through an explicit state. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static int case_num;

static void report(bool ok, const char *name, const char *fmt, ...)
{
	va_list ap;

	case_num++;
	if (!ok) {
		printf("# ");
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
		failures++;
	}
	printf("%s %d %s\n", ok ? "ok" : "not ok", case_num, name);
}

static uint64_t get_msr(struct vm *vm, int i, uint32_t index)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = index };

	if (ioctl(vm->vcpu_fd[i], KVM_GET_MSRS, &m) != 1)
		die("KVM_GET_MSRS(%#x): %s", index, strerror(errno));
	return m.e.data;
}

#ifdef KVM_CAP_PRECISE_TSC
struct tsc_snapshot {
	uint64_t offset;
	uint64_t adjust;
};

static uint64_t get_adjust(struct vm *vm, int i)
{
	return get_msr(vm, i, MSR_IA32_TSC_ADJUST);
}

static struct tsc_snapshot snapshot(struct vm *vm, int i)
{
	return (struct tsc_snapshot) { get_offset(vm, i), get_adjust(vm, i) };
}

static bool documented_errno(int e)
{
	return e == EINVAL || e == ERANGE || e == EFAULT || e == ESTALE;
}

/* Outcomes, as a set: what the model allows, what a call returned. */
enum { O_OK = 1, O_EINVAL = 2, O_ESTALE = 4, O_ERANGE = 8, O_EFAULT = 16, O_EOPNOTSUPP = 32 };
#define NR_OUTCOMES 6

static int outcome(int r, int e)
{
	if (!r)
		return O_OK;
	switch (e) {
	case EINVAL: return O_EINVAL;
	case ESTALE: return O_ESTALE;
	case ERANGE: return O_ERANGE;
	case EFAULT: return O_EFAULT;
	case EOPNOTSUPP: return O_EOPNOTSUPP;
	default: return 0;
	}
}

static const char *outcome_names(int set, char *buf, size_t len)
{
	static const char *const names[] = { "ok", "EINVAL", "ESTALE", "ERANGE", "EFAULT", "EOPNOTSUPP" };
	size_t k, n = 0;

	buf[0] = 0;
	for (k = 0; k < NR_OUTCOMES; k++)
		if (set & (1 << k))
			n += snprintf(buf + n, n < len ? len - n : 0, "%s%s", n ? "|" : "", names[k]);
	return set ? buf : "an undocumented errno";
}

/* What the model cannot decide (a call's time is only known to a window). */
enum tri { NO, YES, MAYBE };

static uint64_t clock_ns(uint32_t flags)
{
	return now_ns(flags & KVM_TSC_STATE_CLOCK_TAI ? CLOCK_TAI : CLOCK_REALTIME);
}

/* One call and what was known around it. */
struct call {
	struct kvm_tsc_state in, out;	/* the struct before and after */
	bool bad_ptr, readonly;
	bool unsupported;		/* the vCPU refuses the TSC state */
	int r, err;
	uint64_t tsc0, tsc1;		/* host TSC before and after */
	uint64_t clk0, clk1;		/* the call's clock before and after */
};

/* Whether KVM refuses the passed reference: ahead of the host TSC or too old. */
static enum tri ref_stale(const struct call *c)
{
	uint64_t ref = c->in.ref_host_tsc;
	uint64_t max_lo = MAX_REF_AGE_S * 990ull * host_khz, max_hi = MAX_REF_AGE_S * 1010ull * host_khz;

	if (ref > c->tsc1 || (ref <= c->tsc0 && c->tsc0 - ref > max_hi))
		return YES;
	if (ref <= c->tsc0 && c->tsc1 - ref <= max_lo)
		return NO;
	return MAYBE;
}

/* Guest cycles of @ns at @khz, with bounds for KVM's fixed-point scaling. */
static void cycles_bounds(uint64_t ns, uint32_t khz, uint64_t *lo, uint64_t *hi)
{
	unsigned __int128 est = (unsigned __int128)ns * khz / 1000000;
	unsigned __int128 slack = est / 1000000 + 2;

	*lo = est > slack ? (uint64_t)(est - slack) : 0;
	*hi = est + slack > UINT64_MAX ? UINT64_MAX : (uint64_t)(est + slack);
}

/*
 * Whether advancing the TSC from @nsec to the reference @ref_nsec fails with
 * ERANGE: only more than 3650 days apart.  The TSC itself counts modulo
 * 2^64 (a wrap is no error).
 */
static enum tri range_at(uint64_t nsec, uint64_t ref_nsec)
{
	uint64_t ns = ref_nsec >= nsec ? ref_nsec - nsec : nsec - ref_nsec;

	return ns > MAX_ELAPSED_NS ? YES : NO;
}

/* The same over every reference time the call may have read. */
static enum tri range_over(const struct call *c)
{
	const struct kvm_tsc_state *st = &c->in;
	uint64_t a, b;
	enum tri ta, tb;

	if (st->flags & KVM_TSC_STATE_REFERENCE_VALID)
		return range_at(st->nsec, st->ref_nsec);
	a = c->clk0 > CLOCK_SLACK_NS ? c->clk0 - CLOCK_SLACK_NS : 0;
	b = c->clk1 + CLOCK_SLACK_NS;
	ta = range_at(st->nsec, a);
	tb = range_at(st->nsec, b);
	/* Monotonic on each side of nsec, where nothing moves. */
	if (st->nsec >= a && st->nsec <= b && (ta != NO || tb != NO))
		return MAYBE;
	return ta == tb ? ta : MAYBE;
}

static bool reserved_set(const struct kvm_tsc_state *st)
{
	int k;

	for (k = 0; k < (int)NR_RESERVED; k++)
		if (st->reserved[k])
			return true;
	return st->pad;
}

/* The outcomes KVM_SET_TSC_STATE may have, in the order KVM checks. */
static int expect_set(const struct call *c, bool has_adjust, uint32_t khz)
{
	const struct kvm_tsc_state *st = &c->in;
	enum tri t;
	int set = 0;

	if (c->unsupported)
		return O_EOPNOTSUPP;
	if (c->bad_ptr)
		return O_EFAULT;
	if ((st->flags & ~ALL_FLAGS) || reserved_set(st))
		return O_EINVAL;
	if ((st->flags & KVM_TSC_STATE_TSC_ADJUST_VALID) && !has_adjust)
		return O_EINVAL;
	if ((st->flags & KVM_TSC_STATE_TIMESTAMP_VALID) && !khz)
		return O_EINVAL;
	if (st->flags & KVM_TSC_STATE_REFERENCE_VALID) {
		t = ref_stale(c);
		if (t == YES)
			return O_ESTALE;
		if (t == MAYBE)
			set |= O_ESTALE;
	}
	if (st->flags & KVM_TSC_STATE_TIMESTAMP_VALID) {
		t = range_over(c);
		if (t == YES)
			return set | O_ERANGE;
		if (t == MAYBE)
			set |= O_ERANGE;
	}
	return set | (c->readonly ? O_EFAULT : O_OK);
}

/* The outcomes KVM_GET_TSC_STATE may have. */
static int expect_get(const struct call *c)
{
	const struct kvm_tsc_state *st = &c->in;
	enum tri t;
	int set = 0;

	if (c->unsupported)
		return O_EOPNOTSUPP;
	if (c->bad_ptr)
		return O_EFAULT;
	if ((st->flags & ~GET_FLAGS) || reserved_set(st))
		return O_EINVAL;
	if (st->flags & KVM_TSC_STATE_REFERENCE_VALID) {
		t = ref_stale(c);
		if (t == YES)
			return O_ESTALE;
		if (t == MAYBE)
			set |= O_ESTALE;
	}
	return set | (c->readonly ? O_EFAULT : O_OK);
}

/* The fuzzed VM, what the fuzzer knows of it, and a page to make read-only. */
struct target {
	struct vm vm;
	bool has_adjust;
	uint32_t khz[2];
	bool unsupported[2];		/* EOPNOTSUPP: a TSC caught up, not scaled */
	struct kvm_tsc_state last;	/* the last reference KVM returned */
	bool have_last;
	struct kvm_tsc_state *page;
};

/* A reference: shared, made up, from the future, too old, or garbage. */
static void random_reference(uint64_t *s, struct target *t, struct kvm_tsc_state *st)
{
	static const uint64_t extremes[] = { 0, 1, UINT64_MAX, 1ull << 63, (1ull << 63) - 1 };
	uint64_t sec = 1000ull * host_khz, now = rdtsc_ordered(), r = rnd(s);

	st->ref_nsec = clock_ns(st->flags);
	switch (r % 9) {
	case 0:
	case 1:
		if (t->have_last) {	/* shared: another call's, with its clock */
			st->ref_nsec = t->last.ref_nsec;
			st->ref_host_tsc = t->last.ref_host_tsc;
			st->flags = (st->flags & ~KVM_TSC_STATE_CLOCK_TAI) |
				    (t->last.flags & KVM_TSC_STATE_CLOCK_TAI);
			break;
		}
		/* fall through */
	case 2:			/* made up from this host's clock and TSC */
		st->ref_host_tsc = now;
		break;
	case 3:			/* a little old, still usable */
		st->ref_host_tsc = now - rnd(s) % (5 * sec);
		break;
	case 4:			/* from the future */
		st->ref_host_tsc = now + 1 + rnd(s) % (100 * sec);
		break;
	case 5:			/* just ahead: depends on when the call reads the TSC */
		st->ref_host_tsc = now + rnd(s) % (sec / 1000);
		break;
	case 6:			/* older than KVM takes */
		st->ref_host_tsc = now - MAX_REF_AGE_S * sec * 11 / 10 - rnd(s) % (1000 * sec);
		break;
	case 7:
		st->ref_host_tsc = extremes[rnd(s) % 5];
		break;
	default:
		st->ref_host_tsc = rnd(s);
	}
	/* The time: the reference's own, or one that does not go with it. */
	switch (r >> 8 & 7) {
	case 0:
		st->ref_nsec = extremes[rnd(s) % 5];
		break;
	case 1:
		st->ref_nsec = rnd(s);
		break;
	case 2:
		st->ref_nsec += (int64_t)(rnd(s) % 20000000000ull) - 10000000000ll;
		break;
	default:
		break;
	}
}

/* A hostile struct for SET: mostly plausible, often extreme, sometimes garbage. */
static void random_state(uint64_t *s, struct target *t, struct kvm_tsc_state *st)
{
	static const uint64_t extremes[] = {
		0, 1, UINT64_MAX, UINT64_MAX - 1, 1ull << 63, (1ull << 63) - 1,
		1ull << 62, 1ull << 58,
	};
	uint64_t r = rnd(s), now;
	int64_t ten_years = MAX_ELAPSED_NS;

	memset(st, 0, sizeof(*st));
	st->flags = (r & 7) ? (rnd(s) & ALL_FLAGS) : ((uint32_t)rnd(s) & ~UNMODELLED_FLAGS);
	if ((r >> 3 & 15) == 0)
		st->pad = rnd(s);
	if ((r >> 7 & 15) == 0)
		st->reserved[rnd(s) % NR_RESERVED] = rnd(s) | 1;
	random_reference(s, t, st);
	now = clock_ns(st->flags);
	switch (r >> 11 & 7) {
	case 0:
	case 1:
		st->nsec = now + (int64_t)(rnd(s) % 20000000000ull) - 10000000000ll;
		break;
	case 2:
		st->nsec = extremes[rnd(s) % 8];
		break;
	case 3:		/* up to 11 years away */
		st->nsec = now + (int64_t)(rnd(s) % (ten_years / 10 * 11)) * ((r & 1) ? -1 : 1);
		break;
	case 4:		/* around KVM's ten years */
		st->nsec = now + (ten_years + (int64_t)(rnd(s) % 20000000000ull) - 10000000000ll) *
				 ((r & 1) ? -1 : 1);
		break;
	case 5:		/* the reference's own time */
		st->nsec = st->ref_nsec;
		break;
	default:
		st->nsec = rnd(s);
	}
	st->tsc = (r >> 14 & 1) ? extremes[rnd(s) % 8] : rnd(s) >> (rnd(s) % 64);
	st->tsc_adjust = (r >> 15 & 1) ? extremes[rnd(s) % 8] : rnd(s);
}

/* A GET input: mostly the two flags GET takes, a reference, garbage elsewhere. */
static void random_get_input(uint64_t *s, struct target *t, struct kvm_tsc_state *st)
{
	uint64_t r = rnd(s);

	memset(st, 0, sizeof(*st));
	st->flags = (r & 7) ? (rnd(s) & GET_FLAGS) : (r & 8) ? (rnd(s) & ALL_FLAGS) :
		    ((uint32_t)rnd(s) & ~UNMODELLED_FLAGS);
	if ((r >> 4 & 31) == 0)
		st->pad = rnd(s);
	if ((r >> 9 & 31) == 0)
		st->reserved[rnd(s) % NR_RESERVED] = rnd(s) | 1;
	random_reference(s, t, st);
	/* What GET does not read: it must overwrite it, and leak nothing. */
	st->nsec = rnd(s);
	st->tsc = rnd(s);
	st->tsc_adjust = rnd(s);
}

/* Make the call on vCPU @v: on the stack, a bad pointer or a read-only page. */
static void do_call(uint64_t *s, struct target *t, int v, unsigned long req, struct call *c)
{
	void *arg = &c->out;
	uint64_t r = rnd(s);

	c->out = c->in;
	c->unsupported = t->unsupported[v];
	c->bad_ptr = r % 64 == 0;
	c->readonly = !c->bad_ptr && r % 64 < 3;
	if (c->bad_ptr) {
		static const uint64_t bad[] = { 0, 16, 0xffff888000000000ull, 0xffffffffffffffa0ull };

		arg = (r >> 6 & 1) ? (void *)(uintptr_t)bad[rnd(s) % 4] :
				     (void *)(uintptr_t)(rnd(s) & ~0xfffull);
	} else if (c->readonly) {
		*t->page = c->in;
		if (mprotect(t->page, 4096, PROT_READ))
			die("mprotect: %s", strerror(errno));
		arg = t->page;
	}
	c->clk0 = clock_ns(c->in.flags);
	c->tsc0 = rdtsc_ordered();
	c->r = ioctl(t->vm.vcpu_fd[v], req, arg);
	c->err = errno;
	c->tsc1 = rdtsc_ordered();
	c->clk1 = clock_ns(c->in.flags);
	if (c->readonly) {
		if (mprotect(t->page, 4096, PROT_READ | PROT_WRITE))
			die("mprotect: %s", strerror(errno));
		c->out = *t->page;
	}
}

/* A fresh reference written back must lie within the call, on the asked clock. */
static bool fresh_ref_ok(const struct call *c, char *why, size_t len)
{
	if (c->out.ref_host_tsc < c->tsc0 || c->out.ref_host_tsc > c->tsc1) {
		snprintf(why, len, "fresh ref_host_tsc %#llx outside the call [%#" PRIx64 ", %#" PRIx64 "]",
			 c->out.ref_host_tsc, c->tsc0, c->tsc1);
		return false;
	}
	if (c->out.ref_nsec + CLOCK_SLACK_NS < c->clk0 || c->out.ref_nsec > c->clk1 + CLOCK_SLACK_NS) {
		snprintf(why, len, "fresh ref_nsec %llu outside the call's %s [%" PRIu64 ", %" PRIu64 "]",
			 c->out.ref_nsec, c->in.flags & KVM_TSC_STATE_CLOCK_TAI ? "CLOCK_TAI" : "CLOCK_REALTIME",
			 c->clk0, c->clk1);
		return false;
	}
	return true;
}

/*
 * After a successful SET: the struct back as it was, the reference filled in
 * and flagged; the offset the one that reference gives; TSC_ADJUST as asked.
 */
static bool set_ok(struct target *t, int v, const struct call *c, struct tsc_snapshot before,
		   char *why, size_t len)
{
	struct kvm_tsc_state want = c->in;
	struct tsc_snapshot after = snapshot(&t->vm, v);
	uint64_t tsc = c->in.tsc, expect;
	int64_t diff, tol = 0;

	want.flags |= KVM_TSC_STATE_REFERENCE_VALID;
	if (!(c->in.flags & KVM_TSC_STATE_REFERENCE_VALID)) {
		if (!fresh_ref_ok(c, why, len))
			return false;
		want.ref_nsec = c->out.ref_nsec;
		want.ref_host_tsc = c->out.ref_host_tsc;
	}
	if (memcmp(&want, &c->out, sizeof(want))) {
		snprintf(why, len, "SET wrote back flags %#x ref %llu/%#llx, not flags %#x ref %llu/%#llx (or changed other fields)",
			 c->out.flags, c->out.ref_nsec, c->out.ref_host_tsc,
			 want.flags, want.ref_nsec, want.ref_host_tsc);
		return false;
	}
	if (after.adjust != ((c->in.flags & KVM_TSC_STATE_TSC_ADJUST_VALID) ? c->in.tsc_adjust : before.adjust)) {
		snprintf(why, len, "TSC_ADJUST %#" PRIx64 " -> %#" PRIx64 " (flags %#x, tsc_adjust %#llx)",
			 before.adjust, after.adjust, c->in.flags, c->in.tsc_adjust);
		return false;
	}
	/* A scaled vCPU's offset depends on a ratio the fuzzer does not know. */
	if (t->khz[v] != host_khz)
		return true;
	if (c->in.flags & KVM_TSC_STATE_TIMESTAMP_VALID) {
		bool forward = c->out.ref_nsec >= c->in.nsec;
		uint64_t lo, hi;

		cycles_bounds(forward ? c->out.ref_nsec - c->in.nsec : c->in.nsec - c->out.ref_nsec,
			      t->khz[v], &lo, &hi);
		tsc = forward ? tsc + (lo + hi) / 2 : tsc - (lo + hi) / 2;
		tol = (hi - lo) / 2 + 1;
	}
	expect = tsc - c->out.ref_host_tsc;
	diff = (int64_t)(after.offset - expect);
	if (diff > tol || diff < -tol) {
		snprintf(why, len, "SET gave offset %#" PRIx64 ", the reference gives %#" PRIx64 " (+-%" PRId64 ")",
			 after.offset, expect, tol);
		return false;
	}
	return true;
}

/* After a successful GET: exactly the documented fields, the TSC at the reference. */
static bool get_ok(struct target *t, int v, const struct call *c, struct tsc_snapshot now,
		   char *why, size_t len)
{
	const struct kvm_tsc_state *o = &c->out;
	uint32_t want = KVM_TSC_STATE_TIMESTAMP_VALID | KVM_TSC_STATE_REFERENCE_VALID |
			(t->has_adjust ? KVM_TSC_STATE_TSC_ADJUST_VALID : 0) |
			(c->in.flags & KVM_TSC_STATE_CLOCK_TAI);
	size_t k;

	if ((o->flags & ~UNMODELLED_FLAGS) != want) {
		snprintf(why, len, "GET flags %#x, not %#x", o->flags, want);
		return false;
	}
	if (o->pad) {
		snprintf(why, len, "GET pad = %#x", o->pad);
		return false;
	}
	for (k = 0; k < sizeof(o->reserved); k++) {
		if (((const uint8_t *)o->reserved)[k]) {
			snprintf(why, len, "GET reserved byte %zu = %#x", k, ((const uint8_t *)o->reserved)[k]);
			return false;
		}
	}
	if (o->tsc_adjust != (t->has_adjust ? now.adjust : 0)) {
		snprintf(why, len, "GET tsc_adjust %#llx, IA32_TSC_ADJUST %#" PRIx64 "%s", o->tsc_adjust,
			 now.adjust, t->has_adjust ? "" : " (not in CPUID: must be 0)");
		return false;
	}
	if (c->in.flags & KVM_TSC_STATE_REFERENCE_VALID) {
		if (o->ref_nsec != c->in.ref_nsec || o->ref_host_tsc != c->in.ref_host_tsc) {
			snprintf(why, len, "GET changed the passed reference %llu/%#llx to %llu/%#llx",
				 c->in.ref_nsec, c->in.ref_host_tsc, o->ref_nsec, o->ref_host_tsc);
			return false;
		}
	} else if (!fresh_ref_ok(c, why, len)) {
		return false;
	}
	if (o->nsec != o->ref_nsec) {
		snprintf(why, len, "GET nsec %llu, ref_nsec %llu", o->nsec, o->ref_nsec);
		return false;
	}
	if (t->khz[v] == host_khz && o->tsc != o->ref_host_tsc + now.offset) {
		snprintf(why, len, "GET tsc %#llx, but ref_host_tsc %#llx + offset %#" PRIx64 " = %#llx",
			 o->tsc, o->ref_host_tsc, now.offset, o->ref_host_tsc + now.offset);
		return false;
	}
	return true;
}

/* Guest that halts: hlt; jmp back. */
static const uint8_t hlt_code[] = { 0xf4, 0xeb, 0xfd };

static void kick(int sig)
{
	(void)sig;
}

/* Put vCPU 0 of @vm into KVM_MP_STATE_HALTED: run HLT, interrupt KVM_RUN. */
static void halt_vcpu(struct vm *vm)
{
	struct kvm_mp_state mp;
	struct sigaction sa = { .sa_handler = kick };
	timer_t timer;
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR1 };
	struct itimerspec its = { .it_value.tv_nsec = 50000000 };

	memcpy((char *)vm->mem + CODE_GPA, hlt_code, sizeof(hlt_code));
	sigaction(SIGUSR1, &sa, NULL);
	sev._sigev_un._tid = gettid();
	if (timer_create(CLOCK_MONOTONIC, &sev, &timer))
		die("timer_create: %s", strerror(errno));
	timer_settime(timer, 0, &its, NULL);
	if (ioctl(vm->vcpu_fd[0], KVM_RUN, NULL) == 0 || errno != EINTR)
		die("halted vCPU: KVM_RUN returned without EINTR (exit %u)", vm->run[0]->exit_reason);
	timer_delete(timer);
	xioctl(vm->vcpu_fd[0], KVM_GET_MP_STATE, &mp, "KVM_GET_MP_STATE");
	if (mp.mp_state != KVM_MP_STATE_HALTED)
		die("vCPU 0 is in mp_state %u, not HALTED", mp.mp_state);
	memcpy((char *)vm->mem + CODE_GPA, guest_code, sizeof(guest_code));

	/* With the in-kernel LAPIC, vCPU 1 waits for INIT/SIPI: make it runnable. */
	mp.mp_state = KVM_MP_STATE_RUNNABLE;
	xioctl(vm->vcpu_fd[1], KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
}

enum vcpu_state { FRESH, RAN, HALTED, SET_TSC_KHZ, NO_TSC_ADJUST, NR_STATES };
static const char *const state_names[] = {
	"never run", "after KVM_RUN", "halted", "after KVM_SET_TSC_KHZ", "without TSC_ADJUST in CPUID"
};
static const char *const state_ids[] = { "fresh", "ran", "halted", "set_tsc_khz", "no_tsc_adjust" };

/* Outcome counts of one ioctl. */
struct counts {
	int n[NR_OUTCOMES];
};

static void count(struct counts *k, int o)
{
	int b;

	for (b = 0; b < NR_OUTCOMES; b++)
		if (o == 1 << b)
			k->n[b]++;
}

/*
 * One call checked against the model: the outcome allowed, a failure
 * changing nothing (vCPU and struct), a success doing exactly what it must.
 */
static bool check_call(struct target *t, int v, unsigned long req, const struct call *c,
		       struct tsc_snapshot before, char *why, size_t len)
{
	bool is_set = req == KVM_SET_TSC_STATE;
	const char *name = is_set ? "SET" : "GET";
	int allowed = is_set ? expect_set(c, t->has_adjust, t->khz[v]) : expect_get(c);
	int got = outcome(c->r, c->err);
	struct tsc_snapshot after;
	char a[64];

	if (!(got & allowed)) {
		snprintf(why, len, "%s flags %#x nsec %llu tsc %#llx ref %llu/%#llx (host TSC %#" PRIx64
			 ", clock %" PRIu64 ")%s%s: %s, not %s",
			 name, c->in.flags, c->in.nsec, c->in.tsc, c->in.ref_nsec, c->in.ref_host_tsc,
			 c->tsc0, c->clk0, c->bad_ptr ? ", bad pointer" : "",
			 c->readonly ? ", read-only" : "",
			 c->r ? strerror(c->err) : "success", outcome_names(allowed, a, sizeof(a)));
		return false;
	}
	if (c->r) {
		after = snapshot(&t->vm, v);
		if (after.offset != before.offset || after.adjust != before.adjust) {
			snprintf(why, len, "failed %s (%s) changed offset %#" PRIx64 " -> %#" PRIx64
				 " or adjust %#" PRIx64 " -> %#" PRIx64, name, strerror(c->err),
				 before.offset, after.offset, before.adjust, after.adjust);
			return false;
		}
		if (!c->bad_ptr && memcmp(&c->in, &c->out, sizeof(c->in))) {
			snprintf(why, len, "failed %s (%s) wrote to the caller's struct", name, strerror(c->err));
			return false;
		}
		return true;
	}
	if (is_set)
		return set_ok(t, v, c, before, why, len);
	after = snapshot(&t->vm, v);
	if (after.offset != before.offset || after.adjust != before.adjust) {
		snprintf(why, len, "GET changed offset %#" PRIx64 " -> %#" PRIx64, before.offset, after.offset);
		return false;
	}
	return get_ok(t, v, c, after, why, len);
}

static void fuzz(enum vcpu_state state)
{
	uint64_t s = rng_state ^ (0x9e3779b97f4a7c15ull * (state + 1));
	int n = iterations / NR_STATES, it, bad = 0, v;
	unsigned int flags = state == HALTED ? VM_IRQCHIP : state == NO_TSC_ADJUST ? VM_NO_TSC_ADJUST : 0;
	struct counts set = { 0 }, get = { 0 };
	char why[320] = "", name[64];
	struct target t = { 0 };

	running = state_ids[state];
	create_vm(&t.vm, 2, flags);
	t.has_adjust = vm_has_tsc_adjust(flags);
	t.page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t.page == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	switch (state) {
	case RAN:
		guest_read_tsc(&t.vm, 0);
		break;
	case HALTED:
		halt_vcpu(&t.vm);
		break;
	case SET_TSC_KHZ:
		/* Without TSC scaling KVM may refuse a new rate: either is fine. */
		ioctl(t.vm.vcpu_fd[0], KVM_SET_TSC_KHZ, tsc_khz + 1000);
		break;
	default:
		break;
	}
	for (v = 0; v < 2; v++) {
		struct kvm_tsc_state probe = { 0 };

		t.khz[v] = ioctl(t.vm.vcpu_fd[v], KVM_GET_TSC_KHZ, 0);
		/*
		 * A guest rate above the host's without TSC scaling: KVM catches
		 * the TSC up at every entry and may refuse the TSC state.
		 */
		t.unsupported[v] = ioctl(t.vm.vcpu_fd[v], KVM_GET_TSC_STATE, &probe) &&
				   errno == EOPNOTSUPP;
		if (t.unsupported[v])
			printf("# vCPU %d (%u kHz, host %u kHz): EOPNOTSUPP, every call must say so\n",
			       v, t.khz[v], host_khz);
	}
	for (it = 0; it < n && !bad; it++) {
		struct tsc_snapshot before;
		struct call c;
		int len;

		/* SET on vCPU 0. */
		random_state(&s, &t, &c.in);
		before = snapshot(&t.vm, 0);
		do_call(&s, &t, 0, KVM_SET_TSC_STATE, &c);
		count(&set, outcome(c.r, c.err));
		if (!check_call(&t, 0, KVM_SET_TSC_STATE, &c, before, why, sizeof(why))) {
			bad++;
			break;
		}
		if (!c.r) {
			t.last = c.out;
			t.have_last = true;
		}

		/* GET on either vCPU, at a random input reference. */
		v = it & 1;
		random_get_input(&s, &t, &c.in);
		before = snapshot(&t.vm, v);
		do_call(&s, &t, v, KVM_GET_TSC_STATE, &c);
		count(&get, outcome(c.r, c.err));
		if (!check_call(&t, v, KVM_GET_TSC_STATE, &c, before, why, sizeof(why))) {
			len = strlen(why);
			snprintf(why + len, sizeof(why) - len, " (vCPU %d)", v);
			bad++;
			break;
		}
		if (!c.r) {
			t.last = c.out;
			t.have_last = true;
		}
	}
	printf("# fuzz, vCPU %s (%u kHz): %d iterations: SET %d ok, %d EINVAL, %d ESTALE, %d ERANGE, %d EFAULT%s;"
	       " GET %d ok, %d EINVAL, %d ESTALE, %d EFAULT%s\n",
	       state_names[state], t.khz[0], it, set.n[0], set.n[1], set.n[2], set.n[3], set.n[4],
	       set.n[5] ? ", all EOPNOTSUPP" : "", get.n[0], get.n[1], get.n[2], get.n[4],
	       get.n[5] ? ", some EOPNOTSUPP" : "");
	snprintf(name, sizeof(name), "fuzz_%s", state_ids[state]);
	/* Every outcome seen, but on a vCPU that refuses the TSC state. */
	report(!bad && (t.unsupported[0] || (set.n[0] && set.n[1] && set.n[2] && set.n[3])) &&
	       ((t.unsupported[0] && t.unsupported[1]) || (get.n[0] && get.n[1] && get.n[2])),
	       name, "iteration %d: %s", it, bad ? why : "some outcome never seen");
	munmap(t.page, 4096);
	destroy_vm(&t.vm);
}

#endif /* KVM_CAP_PRECISE_TSC */

/* Concurrency: everything at once on one VM while its vCPUs run. */
struct conc {
	struct vm *vm;
	const char *name;
	int id;
	int iters;
	volatile int done;	/* iterations done, for the watchdog */
	int bad_errno;
	char why[128];
};

/* What the watchdog reports: the concurrency threads. */
static struct conc *volatile conc_threads;
static volatile int conc_nr;

/*
 * What the concurrency case's vCPUs run (real mode): x2APIC on, its timer
 * in TSC-deadline mode (masked: the guest runs with interrupts off), then
 * in a loop: report the TSC (ports 0x10/0x11, as guest_code), arm a
 * deadline 2^20 cycles ahead, write IA32_TSC with what it reads, flip bit
 * 12 of IA32_TSC_ADJUST, and switch kvmclock's MSR from old to new (off:
 * bit 0 clear).  Every WRMSR is a guest write KVM handles while the other
 * threads GET, SET and write MSRs from the host.
 */
#define WRMSR_CODE_GPA	0x3000
static const uint8_t wrmsr_code[] = {
	0x66, 0xb9, 0x1b, 0x00, 0x00, 0x00,	/* mov ecx, IA32_APIC_BASE */
	0x0f, 0x32,				/* rdmsr */
	0x66, 0x0d, 0x00, 0x0c, 0x00, 0x00,	/* or eax, EN | EXTD */
	0x0f, 0x30,				/* wrmsr */
	0x66, 0xb9, 0x32, 0x08, 0x00, 0x00,	/* mov ecx, x2APIC LVT timer */
	0x66, 0xb8, 0x40, 0x00, 0x05, 0x00,	/* mov eax, TSC-deadline | masked | 0x40 */
	0x66, 0x31, 0xd2,			/* xor edx, edx */
	0x0f, 0x30,				/* wrmsr */
	/* loop: */
	0x0f, 0x31,				/* rdtsc */
	0x66, 0xe7, PORT_TSC_LO,		/* out PORT_TSC_LO, eax */
	0x66, 0x89, 0xd0,			/* mov eax, edx */
	0x66, 0xe7, PORT_TSC_HI,		/* out PORT_TSC_HI, eax */
	0x0f, 0x31,				/* rdtsc */
	0x66, 0x05, 0x00, 0x00, 0x10, 0x00,	/* add eax, 1 << 20 */
	0x66, 0x83, 0xd2, 0x00,			/* adc edx, 0 */
	0x66, 0xb9, 0xe0, 0x06, 0x00, 0x00,	/* mov ecx, IA32_TSC_DEADLINE */
	0x0f, 0x30,				/* wrmsr */
	0x0f, 0x31,				/* rdtsc */
	0x66, 0xb9, 0x10, 0x00, 0x00, 0x00,	/* mov ecx, IA32_TSC */
	0x0f, 0x30,				/* wrmsr */
	0x66, 0xb9, 0x3b, 0x00, 0x00, 0x00,	/* mov ecx, IA32_TSC_ADJUST */
	0x0f, 0x32,				/* rdmsr */
	0x66, 0x35, 0x00, 0x10, 0x00, 0x00,	/* xor eax, 1 << 12 */
	0x0f, 0x30,				/* wrmsr */
	0x66, 0x31, 0xc0,			/* xor eax, eax */
	0x66, 0x31, 0xd2,			/* xor edx, edx */
	0x66, 0xb9, 0x12, 0x00, 0x00, 0x00,	/* mov ecx, MSR_KVM_SYSTEM_TIME */
	0x0f, 0x30,				/* wrmsr */
	0x66, 0xb9, 0x01, 0x4d, 0x56, 0x4b,	/* mov ecx, MSR_KVM_SYSTEM_TIME_NEW */
	0x0f, 0x30,				/* wrmsr */
	0xeb, 0xaf,				/* jmp loop */
};

static void *vcpu_runner(void *p)
{
	struct conc *c = p;
	int i;

	for (i = 0; i < c->iters; i++, c->done = i)
		guest_read_tsc(c->vm, c->id);
	return NULL;
}

#ifdef KVM_CAP_PRECISE_TSC
static void *state_hammer(void *p)
{
	struct conc *c = p;
	uint64_t s = rng_state + c->id * 7919;
	struct kvm_tsc_state last = { 0 };
	struct target t = { .has_adjust = true };
	int i;

	for (i = 0; i < c->iters; i++, c->done = i) {
		int v = rnd(&s) % c->vm->nr_vcpus;
		struct kvm_tsc_state st = { 0 };

		/* At this thread's last reference, on any vCPU, or a fresh one. */
		if (last.flags && (rnd(&s) & 1)) {
			st.flags = last.flags & GET_FLAGS;
			st.ref_nsec = last.ref_nsec;
			st.ref_host_tsc = last.ref_host_tsc;
		} else if (rnd(&s) & 1) {
			st.flags = KVM_TSC_STATE_CLOCK_TAI;
		}
		if (ioctl(c->vm->vcpu_fd[v], KVM_GET_TSC_STATE, &st) && errno != ESTALE) {
			c->bad_errno = errno;
			snprintf(c->why, sizeof(c->why), "GET: %s", strerror(errno));
			return NULL;
		}
		last = st;
		t.last = st;
		t.have_last = true;
		if (rnd(&s) & 1)
			random_state(&s, &t, &st);
		if (ioctl(c->vm->vcpu_fd[v], KVM_SET_TSC_STATE, &st) && !documented_errno(errno)) {
			c->bad_errno = errno;
			snprintf(c->why, sizeof(c->why), "SET: %s", strerror(errno));
			return NULL;
		}
	}
	return NULL;
}

#endif

/* -b: what a VMM without the series does: read and write the offset. */
static void *offset_hammer(void *p)
{
	struct conc *c = p;
	uint64_t s = rng_state + c->id * 7919;
	int i;

	for (i = 0; i < c->iters; i++, c->done = i) {
		int v = rnd(&s) % c->vm->nr_vcpus, w = rnd(&s) % c->vm->nr_vcpus;

		/* Another vCPU's offset (a restore in sync), or a moved one. */
		set_offset(c->vm, v, get_offset(c->vm, w) + ((rnd(&s) & 1) ? rnd(&s) % 4096 : 0));
	}
	return NULL;
}

static void *msr_hammer(void *p)
{
	struct conc *c = p;
	uint64_t s = rng_state ^ 0x5a5a;
	int i;

	for (i = 0; i < c->iters; i++, c->done = i) {
		struct {
			struct kvm_msrs hdr;
			struct kvm_msr_entry e;
		} m = { .hdr.nmsrs = 1 };
		int v = rnd(&s) % c->vm->nr_vcpus;

		m.e.index = (rnd(&s) & 1) ? MSR_IA32_TSC : MSR_IA32_TSC_ADJUST;
		m.e.data = rnd(&s) >> 8;
		if (ioctl(c->vm->vcpu_fd[v], KVM_SET_MSRS, &m) != 1) {
			c->bad_errno = errno;
			snprintf(c->why, sizeof(c->why), "KVM_SET_MSRS(%#x): %s", m.e.index, strerror(errno));
			return NULL;
		}
	}
	return NULL;
}

static void *clock_hammer(void *p)
{
	struct conc *c = p;
	int i;

	for (i = 0; i < c->iters; i++, c->done = i) {
		struct kvm_clock_data d = { 0 };

		if (ioctl(c->vm->fd, KVM_GET_CLOCK, &d)) {
			c->bad_errno = errno;
			snprintf(c->why, sizeof(c->why), "KVM_GET_CLOCK: %s", strerror(errno));
			return NULL;
		}
		d.flags &= KVM_CLOCK_REALTIME;
		if (ioctl(c->vm->fd, KVM_SET_CLOCK, &d)) {
			c->bad_errno = errno;
			snprintf(c->why, sizeof(c->why), "KVM_SET_CLOCK: %s", strerror(errno));
			return NULL;
		}
		ioctl(c->vm->vcpu_fd[i % c->vm->nr_vcpus], KVM_SET_TSC_KHZ, tsc_khz);
	}
	return NULL;
}

static void concurrency(void)
{
	enum { RUNNERS = 4, HAMMERS = 3 };
	struct conc c[RUNNERS + HAMMERS + 2];
	pthread_t t[RUNNERS + HAMMERS + 2];
	int i, n = 0, bad = 0, it = iterations / 4;
	char why[160] = "";
	struct vm vm;
	uint64_t start = now_ns(CLOCK_MONOTONIC);
	bool guest_wrmsr;

	running = "concurrency";
	/* The guest's WRMSRs need TSC_ADJUST in CPUID (else a #GP, fatal in real mode). */
	guest_wrmsr = vm_has_tsc_adjust(0);
	create_vm(&vm, RUNNERS, (base_ioctls ? 0 : VM_DISABLE_TSC_QUIRK) |
		  (guest_wrmsr ? VM_IRQCHIP | VM_TSC_DEADLINE : 0));
	if (guest_wrmsr) {
		struct kvm_regs regs = { .rip = WRMSR_CODE_GPA, .rflags = 2 };

		memcpy((char *)vm.mem + WRMSR_CODE_GPA, wrmsr_code, sizeof(wrmsr_code));
		for (i = 0; i < RUNNERS; i++)
			xioctl(vm.vcpu_fd[i], KVM_SET_REGS, &regs, "KVM_SET_REGS");
	}
	conc_threads = c;
	for (i = 0; i < RUNNERS; i++, n++) {
		c[n] = (struct conc) { .vm = &vm, .name = "vCPU runner", .id = i, .iters = it };
		pthread_create(&t[n], NULL, vcpu_runner, &c[n]);
		conc_nr = n + 1;
	}
	for (i = 0; i < HAMMERS; i++, n++) {
		c[n] = (struct conc) { .vm = &vm, .name = base_ioctls ? "offset" : "GET/SET",
				       .id = i + 1, .iters = it };
#ifdef KVM_CAP_PRECISE_TSC
		if (!base_ioctls)
			pthread_create(&t[n], NULL, state_hammer, &c[n]);
		else
#endif
			pthread_create(&t[n], NULL, offset_hammer, &c[n]);
		conc_nr = n + 1;
	}
	c[n] = (struct conc) { .vm = &vm, .name = "MSR", .iters = it };
	pthread_create(&t[n], NULL, msr_hammer, &c[n]);
	conc_nr = ++n;
	c[n] = (struct conc) { .vm = &vm, .name = "clock", .iters = it / 4 };
	pthread_create(&t[n], NULL, clock_hammer, &c[n]);
	conc_nr = ++n;
	for (i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		if (c[i].bad_errno && !bad) {
			snprintf(why, sizeof(why), "%s", c[i].why);
			bad++;
		}
	}
	for (i = 0; i < RUNNERS && !bad; i++) {
		/* The guest's prologue put its LAPIC in x2APIC mode. */
		if (guest_wrmsr && (get_msr(&vm, i, 0x1b) & 0xc00) != 0xc00) {
			snprintf(why, sizeof(why), "vCPU %d: IA32_APIC_BASE %#" PRIx64 ": the guest's WRMSRs did not run",
				 i, get_msr(&vm, i, 0x1b));
			bad++;
		}
	}
#ifdef KVM_CAP_PRECISE_TSC
	/*
	 * Quiesced: any serial order ends in a state where GET then SET of
	 * what GET returned, at the reference GET used, changes nothing.
	 */
	for (i = 0; i < RUNNERS && !bad && !base_ioctls; i++) {
		struct tsc_snapshot before = snapshot(&vm, i), after;
		struct kvm_tsc_state st = { 0 };

		xioctl(vm.vcpu_fd[i], KVM_GET_TSC_STATE, &st, "KVM_GET_TSC_STATE");
		xioctl(vm.vcpu_fd[i], KVM_SET_TSC_STATE, &st, "KVM_SET_TSC_STATE");
		after = snapshot(&vm, i);
		if (before.offset != after.offset || before.adjust != after.adjust) {
			snprintf(why, sizeof(why), "vCPU %d: GET+SET moved offset %#" PRIx64 " -> %#" PRIx64,
				 i, before.offset, after.offset);
			bad++;
		}
	}
#endif
	conc_nr = 0;
	printf("# concurrency: %d vCPU runners x %d runs%s, %d %s threads x %d, 1 MSR thread x %d, 1 clock thread x %d: %.1f s\n",
	       RUNNERS, it, guest_wrmsr ? " (guest WRMSR to TSC, TSC_ADJUST, TSC deadline, kvmclock)" :
	       " (no TSC_ADJUST in CPUID: reads only)", HAMMERS,
	       base_ioctls ? "KVM_VCPU_TSC_OFFSET" : "GET/SET", it, it, it / 4,
	       (now_ns(CLOCK_MONOTONIC) - start) / 1e9);
	report(!bad, "concurrency", "%s", why);
	destroy_vm(&vm);
}

/*
 * Review M1's race.  vCPU 0's guest switches kvmclock between its old and
 * new MSR, which turns the master clock off and on (KVM keeps no master
 * clock for a boot vCPU on the old MSR): the WRMSR sets
 * boot_vcpu_runs_old_kvmclock and requests a master clock update on vCPU 0,
 * not waiting for anyone.  Meanwhile another thread SETs vCPU 1's state
 * with kvmclock, over and over at one reference (so that its offset and
 * kvmclock never change), and each SET updates the master clock itself.
 * Once the guest has reported a switch (KVM handled the WRMSR and entered
 * the guest again), KVM_GET_CLOCK must say what the MSR implies: a SET that
 * consumed vCPU 0's request after it read the old flag (v2 cleared every
 * vCPU's KVM_REQ_MASTERCLOCK_UPDATE) leaves the master clock on for an
 * old-MSR guest, or off for a new-MSR one.
 */
#define PORT_OLD_MSR	0x30
#define PORT_NEW_MSR	0x31
#define RACE_CODE_GPA	0x2000
#define MSR_KVM_SYSTEM_TIME	0x12
#define MSR_KVM_SYSTEM_TIME_NEW	0x4b564d01

/*
 * Real mode: mov ecx, MSR_KVM_SYSTEM_TIME; xor eax, eax; xor edx, edx;
 * wrmsr; out PORT_OLD_MSR, al; mov ecx, MSR_KVM_SYSTEM_TIME_NEW; wrmsr;
 * out PORT_NEW_MSR, al; jmp back.  kvmclock stays disabled (bit 0 clear).
 */
static const uint8_t msr_switch_code[] = {
	0x66, 0xb9, 0x12, 0x00, 0x00, 0x00,
	0x66, 0x31, 0xc0,
	0x66, 0x31, 0xd2,
	0x0f, 0x30,
	0xe6, PORT_OLD_MSR,
	0x66, 0xb9, 0x01, 0x4d, 0x56, 0x4b,
	0x0f, 0x30,
	0xe6, PORT_NEW_MSR,
	0xeb, 0xe4,
};

struct race {
	struct vm *vm;
	volatile bool stop;
	int sets, gets;
	char why[128];
};

#ifdef KVM_CAP_PRECISE_TSC
/* SET vCPU 1 at one reference, with kvmclock: a new one every second. */
static bool race_set_state(struct race *r, struct kvm_tsc_state *st, uint64_t *got)
{
	/* KVM refuses a reference older than 10 s. */
	if (!*got || now_ns(CLOCK_MONOTONIC) - *got > 1000000000ull) {
		memset(st, 0, sizeof(*st));
		if (ioctl(r->vm->vcpu_fd[1], KVM_GET_TSC_STATE, st)) {
			snprintf(r->why, sizeof(r->why), "GET: %s", strerror(errno));
			return false;
		}
		if (!(st->flags & KVM_TSC_STATE_KVMCLOCK_VALID)) {
			snprintf(r->why, sizeof(r->why), "GET: no kvmclock (flags %#x)", st->flags);
			return false;
		}
		st->flags |= KVM_TSC_STATE_REFERENCE_VALID;
		*got = now_ns(CLOCK_MONOTONIC);
		r->gets++;
	}
	if (ioctl(r->vm->vcpu_fd[1], KVM_SET_TSC_STATE, st)) {
		snprintf(r->why, sizeof(r->why), "SET: %s", strerror(errno));
		return false;
	}
	return true;
}
#endif

/* -b: KVM_SET_CLOCK of what KVM_GET_CLOCK read, which updates the master clock too. */
static bool race_set_clock(struct race *r)
{
	struct kvm_clock_data d = { 0 };

	if (ioctl(r->vm->fd, KVM_GET_CLOCK, &d)) {
		snprintf(r->why, sizeof(r->why), "KVM_GET_CLOCK: %s", strerror(errno));
		return false;
	}
	r->gets++;
	d.flags &= KVM_CLOCK_REALTIME;
	if (ioctl(r->vm->fd, KVM_SET_CLOCK, &d)) {
		snprintf(r->why, sizeof(r->why), "KVM_SET_CLOCK: %s", strerror(errno));
		return false;
	}
	return true;
}

static void *kvmclock_setter(void *p)
{
	struct race *r = p;
	uint64_t s = rng_state ^ 0xc10c4;
#ifdef KVM_CAP_PRECISE_TSC
	struct kvm_tsc_state st = { 0 };
	uint64_t got = 0;
#endif

	while (!r->stop && !r->why[0]) {
		uint64_t quiet;

#ifdef KVM_CAP_PRECISE_TSC
		if (!base_ioctls) {
			if (!race_set_state(r, &st, &got))
				break;
		} else
#endif
		if (!race_set_clock(r))
			break;
		r->sets++;
		/*
		 * Then quiet for up to 300 us: each SET updates the master clock
		 * itself and so repairs what an earlier one got wrong.  A wrong
		 * state shows only when vCPU 0 reports its switch before the
		 * next SET.
		 */
		quiet = now_ns(CLOCK_MONOTONIC) + rnd(&s) % 300000;
		while (now_ns(CLOCK_MONOTONIC) < quiet && !r->stop)
			;
	}
	return NULL;
}

static bool master_clock_on(struct vm *vm)
{
	struct kvm_clock_data d = { 0 };

	xioctl(vm->fd, KVM_GET_CLOCK, &d, "KVM_GET_CLOCK");
	return d.flags & KVM_CLOCK_TSC_STABLE;
}

/* Whether the host's clocksource is the TSC (the master clock needs it). */
static bool host_clocksource_tsc(void)
{
	char buf[32] = "";
	FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
	}
	return !strncmp(buf, "tsc", 3) && (buf[3] == '\n' || !buf[3]);
}

static void kvmclock_race(void)
{
	struct kvm_regs regs = { .rip = RACE_CODE_GPA, .rflags = 2 };
	int i, n = iterations * 5, wrong_on = 0, wrong_off = 0, first = 0;
	uint64_t start = now_ns(CLOCK_MONOTONIC);
	struct race r = { 0 };
	char why[200] = "";
	pthread_t t;
	struct vm vm;

	running = "kvmclock_race";
	create_vm(&vm, 2, 0);
	r.vm = &vm;
	/* The master clock is computed at a vCPU's first KVM_RUN. */
	guest_read_tsc(&vm, 1);
	if (!master_clock_on(&vm) || !host_clocksource_tsc()) {
		case_num++;
		printf("ok %d kvmclock_race # SKIP no master clock to start with (host clocksource not the TSC?)\n",
		       case_num);
		destroy_vm(&vm);
		return;
	}
	memcpy((char *)vm.mem + RACE_CODE_GPA, msr_switch_code, sizeof(msr_switch_code));
	xioctl(vm.vcpu_fd[0], KVM_SET_REGS, &regs, "KVM_SET_REGS");
	pthread_create(&t, NULL, kvmclock_setter, &r);
	for (i = 0; i < n && !r.why[0]; i++) {
		struct kvm_run *run = vm.run[0];
		bool on;

		xioctl(vm.vcpu_fd[0], KVM_RUN, NULL, "KVM_RUN");
		if (run->exit_reason != KVM_EXIT_IO ||
		    (run->io.port != PORT_OLD_MSR && run->io.port != PORT_NEW_MSR))
			bad_exit(&vm, 0);
		on = master_clock_on(&vm);
		if (run->io.port == PORT_OLD_MSR && on)
			wrong_on++;
		else if (run->io.port == PORT_NEW_MSR && !on)
			wrong_off++;
		else
			continue;
		if (!first)
			first = i + 1;
	}
	r.stop = true;
	pthread_join(t, NULL);
	printf("# kvmclock race: %d MSR switches by vCPU 0's guest against %d %s: %.1f s\n",
	       i, r.sets, base_ioctls ? "KVM_SET_CLOCKs" : "SETs with kvmclock on vCPU 1",
	       (now_ns(CLOCK_MONOTONIC) - start) / 1e9);
	if (r.why[0])
		snprintf(why, sizeof(why), "vCPU 1: %s", r.why);
	else if (wrong_on)
		snprintf(why, sizeof(why), "master clock on after %d of %d switches to the old MSR (first at switch %d)",
			 wrong_on, (i + 1) / 2, first);
	/* Off with the new MSR also follows from a host that left the TSC. */
	else if (wrong_off && host_clocksource_tsc())
		snprintf(why, sizeof(why), "master clock off after %d of %d switches to the new MSR (first at switch %d)",
			 wrong_off, i / 2, first);
	else if (wrong_off)
		printf("# %d switches to the new MSR left the master clock off, and the host's clocksource is no longer the TSC\n",
		       wrong_off);
	report(!why[0], "kvmclock_race", "%s", why);
	destroy_vm(&vm);
}

#ifdef KVM_CAP_PRECISE_TSC
/*
 * Steps CLOCK_REALTIME by NS.  The clock is read, then set: the time in
 * between is lost from the step, so the step taken lies in [NS - w, NS],
 * with w the CLOCK_MONOTONIC time around both, which is returned.
 */
static int64_t step_realtime(int64_t ns)
{
	uint64_t m0 = now_ns(CLOCK_MONOTONIC), t = now_ns(CLOCK_REALTIME) + ns;
	struct timespec ts = { t / 1000000000ull, t % 1000000000ull };

	if (clock_settime(CLOCK_REALTIME, &ts))
		die("clock_settime: %s", strerror(errno));
	return now_ns(CLOCK_MONOTONIC) - m0;
}

/*
 * CLOCK_REALTIME stepped back and forth before a GET and between it and a
 * SET on the other vCPU: at GET's reference, the SET lands exactly on the
 * GET's vCPU whatever the steps; at a fresh reference it takes the step
 * between the two calls whole.
 */
static void clock_steps(void)
{
	uint64_t s = rng_state ^ 0xc10c, real0 = now_ns(CLOCK_REALTIME), mono0 = now_ns(CLOCK_MONOTONIC);
	int i, bad = 0, n = iterations / 10, shared = 0;
	int64_t max_lost = 0, max_err = 0;
	char why[200] = "";
	struct vm vm;

	if (geteuid()) {
		case_num++;
		printf("ok %d clock_steps # SKIP needs root to step CLOCK_REALTIME\n", case_num);
		return;
	}
	running = "clock_steps";
	create_vm(&vm, 2, VM_DISABLE_TSC_QUIRK);
	{
		/* Far from 0, so that no step takes the TSC across its wrap. */
		struct kvm_tsc_state st = { .tsc = 1ull << 50 };

		xioctl(vm.vcpu_fd[0], KVM_SET_TSC_STATE, &st, "KVM_SET_TSC_STATE");
	}
	for (i = 0; i < n && !bad; i++) {
		struct kvm_tsc_state st = { .flags = (rnd(&s) & 1) ? KVM_TSC_STATE_CLOCK_TAI : 0 };
		int64_t step1 = (int64_t)(rnd(&s) % 20000000000ull) - 10000000000ll;
		int64_t step2 = (int64_t)(rnd(&s) % 20000000000ull) - 10000000000ll;
		int a = i & 1, b = !a;
		bool share = rnd(&s) & 1;
		int64_t diff, want, tol, lost;

		step_realtime(step1);
		if (ioctl(vm.vcpu_fd[a], KVM_GET_TSC_STATE, &st)) {
			snprintf(why, sizeof(why), "GET after a %+" PRId64 " ns step: %s", step1, strerror(errno));
			bad++;
			break;
		}
		lost = step_realtime(step2);
		strip_unmodelled(&st);
		if (!share)
			st.flags &= ~KVM_TSC_STATE_REFERENCE_VALID;
		if (ioctl(vm.vcpu_fd[b], KVM_SET_TSC_STATE, &st)) {
			snprintf(why, sizeof(why), "SET at a %s reference after a %+" PRId64 " ns step: %s",
				 share ? "shared" : "fresh", step2, strerror(errno));
			bad++;
			break;
		}
		diff = (int64_t)(get_offset(&vm, b) - get_offset(&vm, a));
		/*
		 * A fresh reference: the step in guest cycles (the time between
		 * the calls is in both the elapsed time and the host TSC, and
		 * cancels), less up to the time the step lost (measured), up to
		 * the clock's rate error (1 ppm) and 1 us of rounding.
		 */
		want = share ? 0 : (int64_t)((__int128)step2 * tsc_khz / 1000000);
		tol = share ? 0 : (want < 0 ? -want : want) / 1000000 + tsc_khz / 1000;
		lost = share ? 0 : (int64_t)((__int128)lost * tsc_khz / 1000000);
		if (diff < want - lost - tol || diff > want + tol) {
			snprintf(why, sizeof(why), "%s reference, steps %+" PRId64 "/%+" PRId64
				 " ns: offsets %" PRId64 " cycles apart, want %" PRId64 " - [0, %" PRId64 "] +- %" PRId64,
				 share ? "shared" : "fresh", step1, step2, diff, want, lost, tol);
			bad++;
		}
		if (!share) {
			max_lost = lost > max_lost ? lost : max_lost;
			max_err = diff - want > max_err ? diff - want : max_err;
			max_err = want - lost - diff > max_err ? want - lost - diff : max_err;
		}
		shared += share;
	}
	{
		uint64_t t = real0 + (now_ns(CLOCK_MONOTONIC) - mono0);
		struct timespec ts = { t / 1000000000ull, t % 1000000000ull };

		clock_settime(CLOCK_REALTIME, &ts);
	}
	printf("# clock steps: %d GET/SET pairs (%d at a shared reference) with steps of up to +-10 s before and between them, clock put back; fresh references: step lost up to %" PRId64 " cycles, outside it by up to %" PRId64 "\n",
	       i, shared, max_lost, max_err);
	report(!bad, "clock_steps", "%s", why);
	destroy_vm(&vm);
}

/* Close the vCPU and VM fds while another thread is inside GET/SET. */
struct lifetime {
	int fd;
	volatile bool stop;
	int bad_errno;
};

static void *lifetime_hammer(void *p)
{
	struct lifetime *l = p;

	while (!l->stop) {
		struct kvm_tsc_state st = { 0 };

		if (ioctl(l->fd, KVM_GET_TSC_STATE, &st) && errno != EBADF) {
			l->bad_errno = errno;
			return NULL;
		}
		if (ioctl(l->fd, KVM_SET_TSC_STATE, &st) && errno != EBADF && !documented_errno(errno)) {
			l->bad_errno = errno;
			return NULL;
		}
	}
	return NULL;
}

static void lifetime(void)
{
	int i, n = iterations / 20, bad = 0;
	char why[96] = "";

	running = "lifetime";
	for (i = 0; i < n && !bad; i++) {
		struct lifetime l = { 0 };
		pthread_t t;
		struct vm vm;

		create_vm(&vm, 1, 0);
		l.fd = vm.vcpu_fd[0];
		pthread_create(&t, NULL, lifetime_hammer, &l);
		usleep(200 + i % 500);
		munmap(vm.run[0], run_size);
		close(vm.vcpu_fd[0]);
		close(vm.fd);
		usleep(100);
		l.stop = true;
		pthread_join(t, NULL);
		munmap(vm.mem, MEM_SIZE);
		if (l.bad_errno) {
			snprintf(why, sizeof(why), "round %d: errno %d", i, l.bad_errno);
			bad++;
		}
	}
	printf("# lifetime: %d rounds of closing the vCPU and VM fds under a GET/SET thread\n", i);
	report(!bad, "lifetime", "%s", why);
}

#endif /* KVM_CAP_PRECISE_TSC */

/* Print @path's first line after @what, for the watchdog. */
static void print_file(const char *what, const char *path)
{
	char buf[256] = "?";
	FILE *f = fopen(path, "r");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			strcpy(buf, "?");
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = 0;
	printf(" %s %s", what, buf);
}

/*
 * Where each thread is: its state (R: running, in the kernel if in a
 * syscall; S/D: sleeping), the kernel function it waits in, its syscall.
 */
static void dump_threads(void)
{
	struct dirent *d;
	char path[300];
	DIR *dir = opendir("/proc/self/task");

	if (!dir)
		return;
	while ((d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		printf("# watchdog: tid %s:", d->d_name);
		snprintf(path, sizeof(path), "/proc/self/task/%s/stat", d->d_name);
		print_file("stat", path);
		snprintf(path, sizeof(path), "/proc/self/task/%s/wchan", d->d_name);
		print_file("wchan", path);
		snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", d->d_name);
		print_file("syscall", path);
		printf("\n");
	}
	closedir(dir);
}

#define TRACEFS	"/sys/kernel/tracing"
#define TRACE_LINES	400

/* Write @val to tracefs file @path; false if it cannot. */
static bool trace_write(const char *path, const char *val)
{
	char full[256];
	FILE *f;
	bool ok;

	snprintf(full, sizeof(full), TRACEFS "/%s", path);
	f = fopen(full, "w");
	if (!f)
		return false;
	ok = fputs(val, f) >= 0;
	return !fclose(f) && ok;
}

/*
 * -t: KVM's tracepoints and the hrtimer events into a small overwriting
 * ring buffer, for the watchdog to dump if the run hangs.
 */
static void start_trace(void)
{
	static const char *const events[] = {
		"events/kvm/enable", "events/timer/hrtimer_start/enable",
		"events/timer/hrtimer_expire_entry/enable", "events/timer/hrtimer_cancel/enable",
	};
	unsigned int i;

	if (access(TRACEFS "/trace", F_OK))
		mount("tracefs", TRACEFS, "tracefs", 0, NULL);
	if (!trace_write("tracing_on", "0") || !trace_write("buffer_size_kb", "512") ||
	    !trace_write("trace", "")) {
		printf("# -t: no tracefs (a kernel without CONFIG_TRACING?): not tracing\n");
		return;
	}
	for (i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		if (!trace_write(events[i], "1"))
			printf("# -t: cannot enable %s\n", events[i]);
	trace_write("tracing_on", "1");
	printf("# tracing KVM and hrtimer events into a %s KiB per-CPU ring buffer\n", "512");
}

/*
 * With -t: stop the trace and print its last TRACE_LINES lines, only the KVM
 * events of thread @tid if it is positive.  They end where the vCPUs are.
 */
static void dump_trace(pid_t tid)
{
	static char lines[TRACE_LINES][256];
	unsigned int n = 0, i;
	char tag[32];
	FILE *f;

	if (!trace_kvm)
		return;
	trace_write("tracing_on", "0");
	f = fopen(TRACEFS "/trace", "r");
	if (!f)
		return;
	snprintf(tag, sizeof(tag), "-%d ", (int)tid);
	while (fgets(lines[n % TRACE_LINES], sizeof(lines[0]), f))
		if (lines[n % TRACE_LINES][0] != '#' &&
		    (tid <= 0 || (strstr(lines[n % TRACE_LINES], tag) &&
				  strstr(lines[n % TRACE_LINES], " kvm_"))))
			n++;
	fclose(f);
	printf("# trace: the last %u lines%s:\n", n < TRACE_LINES ? n : TRACE_LINES,
	       tid <= 0 ? "" : " of KVM events of the vCPU's thread");
	for (i = n < TRACE_LINES ? 0 : n - TRACE_LINES; i < n; i++)
		printf("# trace: %s", lines[i % TRACE_LINES]);
}

/*
 * The kernel symbol at or below @addr, from /proc/kallsyms (root only),
 * printed; returns whether it is @want in module @want_mod.
 */
static bool print_kernel_symbol(uint64_t addr, const char *want, const char *want_mod)
{
	char line[512], best[512] = "", name[256], mod[256];
	unsigned long long a, best_a = 0;
	FILE *f = fopen("/proc/kallsyms", "r");
	bool is_want = false;
	char type;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		mod[0] = 0;
		if (sscanf(line, "%llx %c %255s %255[^\n]", &a, &type, name, mod) < 3)
			continue;
		if (a && a <= addr && a > best_a) {
			best_a = a;
			snprintf(best, sizeof(best), "%s+%#llx %s", name, addr - a, mod);
			is_want = !strcmp(name, want) && strstr(mod, want_mod);
		}
	}
	fclose(f);
	printf("# %#llx is %s\n", (unsigned long long)addr, best_a ? best : "no kernel symbol");
	return is_want;
}

/*
 * How a case's child process ends (run_unit()): its result printed, ok or
 * not; or the emulator's recorded corruption met.  Any other status (die(),
 * a signal) means it ended without printing its result.
 */
#define UNIT_OK		0
#define UNIT_FAILED	10
#define UNIT_EMULATOR	11
#define UNIT_WATCHDOG	12

/*
 * A vCPU exit the guest's code cannot cause (minivmm's bad_exit()): a
 * kernel address as the guest's RIP means the vCPU runs host state.
 *
 * One such state has a recorded signature (docs/issue19-hang-2026-12-06.md,
 * the kernel cover letter): the vCPU's RIP is the L1 host's own RIP at
 * VMRUN, inside kvm_amd's __svm_vcpu_run.  Only the CPU that executes VMRUN
 * knows that RIP, KVM never stores it in a guest's state, and here that
 * CPU is QEMU's TCG emulation of SVM.  Loops of the concurrency cases met
 * it 3 times in 432 runs.  The case's child ends with UNIT_EMULATOR, and the
 * case runs once more; any other bad exit fails it.
 */
static void on_bad_exit(int vcpu, uint64_t rip)
{
	bool emulator = false;

	(void)vcpu;
	if (rip >= 0xffff800000000000ull)
		emulator = print_kernel_symbol(rip, "__svm_vcpu_run", "kvm_amd");
	dump_trace(gettid());
	if (emulator) {
		printf("# %s: the vCPU ran the L1 host's state at VMRUN: the emulator's recorded corruption\n",
		       running);
		fflush(stdout);
		_exit(UNIT_EMULATOR);
	}
	fflush(stdout);
}

/* On a hang: every task's stack (sysrq-t, on the kernel's console), then the trace. */
static void dump_kernel(void)
{
	int fd = open("/proc/sysrq-trigger", O_WRONLY);

	if (fd >= 0) {
		printf("# watchdog: sysrq-t: every task's stack on the console\n");
		if (write(fd, "t", 1) != 1)
			printf("# watchdog: sysrq-t: %s\n", strerror(errno));
		close(fd);
	}
	dump_trace(0);
}

static void watchdog(int sig)
{
	int i;

	(void)sig;
	printf("# watchdog: in %s after %d s\n", running, watchdog_s);
	dump_threads();
	for (i = 0; i < conc_nr; i++)
		printf("# watchdog: %s thread %d: %d of %d iterations done\n", conc_threads[i].name,
		       conc_threads[i].id, conc_threads[i].done, conc_threads[i].iters);
	dump_kernel();
	printf("Bail out! watchdog: not finished after %d s (deadlock?)\n", watchdog_s);
	fflush(stdout);
	_exit(in_child ? UNIT_WATCHDOG : 1);
}

/* Make CLOCK_TAI differ from CLOCK_REALTIME for the run (root only); -1: left as is. */
static int set_tai_offset(int offset)
{
	struct timex tx = { .modes = 0 };

	if (geteuid() || adjtimex(&tx) < 0)
		return -1;
	{
		struct timex set = { .modes = ADJ_TAI, .constant = offset };

		if (adjtimex(&set) < 0)
			return -1;
	}
	return tx.tai;
}

/*
 * Run one result's worth of a case (@run, or fuzz() of vCPU state @st) in a
 * child process under the watchdog, so that a vCPU that dies of the
 * emulator's recorded corruption (on_bad_exit()) costs a rerun of that
 * case, with a fresh seed, instead of the rest of the run.  The rerun is
 * printed; a second corruption in a row, any other death and the watchdog
 * fail the case (the watchdog ends the run: its VM may be stuck).
 */
static void run_unit(const char *name, void (*run)(void), int st)
{
	int attempt, status;
	pid_t pid;

	(void)st;	/* unused without the series' uAPI (-b only) */
	running = name;
	for (attempt = 1;; attempt++) {
		fflush(stdout);
		pid = fork();
		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (!pid) {
			in_child = true;
			failures = 0;
			alarm(watchdog_s);
			if (run)
				run();
#ifdef KVM_CAP_PRECISE_TSC
			else
				fuzz(st);
#endif
			fflush(stdout);
			_exit(failures ? UNIT_FAILED : UNIT_OK);
		}
		/* A backstop, should the child's own watchdog not end it */
		alarm(watchdog_s + 30);
		while (waitpid(pid, &status, 0) < 0)
			if (errno != EINTR)
				die("waitpid: %s", strerror(errno));
		alarm(watchdog_s);
		if (WIFEXITED(status) && WEXITSTATUS(status) == UNIT_EMULATOR && attempt == 1) {
			rng_state = rnd(&rng_state) | 1;
			printf("# %s: rerun once after the emulator's corruption, seed %#" PRIx64 "\n",
			       name, rng_state);
			if (trace_kvm)
				trace_write("tracing_on", "1");
			continue;
		}
		break;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == UNIT_OK) {
		case_num++;
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == UNIT_FAILED) {
		case_num++;
		failures++;
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == UNIT_WATCHDOG) {
		exit(1);
	} else {
		report(false, name, "%s: %s %d before its result%s", name,
		       WIFEXITED(status) ? "exited with status" : "killed by signal",
		       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
		       WIFEXITED(status) && WEXITSTATUS(status) == UNIT_EMULATOR ?
		       " (the emulator's corruption, twice in a row)" : "");
	}
}

/* The cases, in the order they run; fuzz is one per vCPU state. */
static const struct {
	const char *name;
	void (*run)(void);
	int results;
	bool base;		/* runs with -b */
} cases[] = {
#ifdef KVM_CAP_PRECISE_TSC
	{ "fuzz", NULL, NR_STATES, false },
#endif
	{ "concurrency", concurrency, 1, true },
	{ "kvmclock_race", kvmclock_race, 1, true },
#ifdef KVM_CAP_PRECISE_TSC
	{ "clock_steps", clock_steps, 1, false },
	{ "lifetime", lifetime, 1, false },
#endif
};
#define NR_CASES (int)(sizeof(cases) / sizeof(cases[0]))

/* Whether @name is in the comma-separated @only (NULL: every case). */
static bool selected(const char *only, const char *name)
{
	size_t len = strlen(name);
	const char *p = only;

	if (!only)
		return true;
	while ((p = strstr(p, name))) {
		if ((p == only || p[-1] == ',') && (p[len] == ',' || !p[len]))
			return true;
		p += len;
	}
	return false;
}

int main(int argc, char **argv)
{
	struct vm probe;
	int c, old_tai, planned = 0;
	const char *only = NULL;

	rng_state = now_ns(CLOCK_REALTIME) | 1;
	while ((c = getopt(argc, argv, "s:i:c:w:tb")) != -1) {
		switch (c) {
		case 'b':
			base_ioctls = true;
			break;
		case 'c':
			only = optarg;
			break;
		case 'w':
			watchdog_s = atoi(optarg);
			if (watchdog_s <= 0)
				usage_error("-w wants seconds");
			break;
		case 't':
			trace_kvm = true;
			break;
		case 's':
			rng_state = strtoull(optarg, NULL, 0) | 1;
			break;
		case 'i':
			iterations = atoi(optarg);
			if (iterations < 40)
				usage_error("-i wants at least 40 iterations");
			break;
		default:
			usage_error("usage: tsc_state_fuzz [-s SEED] [-i ITERATIONS] [-c CASE,...] [-w WATCHDOG_S] [-t] [-b]\n"
				    "  CASE: fuzz concurrency kvmclock_race clock_steps lifetime (default: all;\n"
				    "  with -b, the base ioctls, concurrency and kvmclock_race)");
		}
	}
#ifndef KVM_CAP_PRECISE_TSC
	/* Built without the series' uAPI: only the comparison runs. */
	if (!base_ioctls)
		usage_error("built without KVM_CAP_PRECISE_TSC: only -b runs");
#endif
	if (base_ioctls && !only)
		only = "concurrency,kvmclock_race";
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, watchdog);
	alarm(watchdog_s);	/* the setup; run_unit() re-arms it per case */

	open_kvm();
	for (c = 0; c < NR_CASES; c++) {
		if (!selected(only, cases[c].name))
			continue;
		if (base_ioctls && !cases[c].base)
			usage_error("-b: %s needs the series' ioctls", cases[c].name);
		planned += cases[c].results;
	}
	if (!planned)
		usage_error("-c %s: no such case", only);
	printf("TAP version 13\n");
#ifdef KVM_CAP_PRECISE_TSC
	if (!base_ioctls && ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_PRECISE_TSC) <= 0) {
		printf("1..0 # SKIP KVM_CAP_PRECISE_TSC not supported\n");
		return 4;
	}
#endif
	create_vm(&probe, 1, 0);
	tsc_khz = ioctl(probe.vcpu_fd[0], KVM_GET_TSC_KHZ, 0);
#ifdef KVM_CAP_PRECISE_TSC
	if (!base_ioctls) {
		struct kvm_tsc_state st = { 0 };

		if (ioctl(probe.vcpu_fd[0], KVM_GET_TSC_STATE, &st) && errno == EOPNOTSUPP) {
			printf("1..0 # SKIP KVM refuses the TSC state on this host (unstable TSC?)\n");
			return 4;
		}
	}
#endif
	destroy_vm(&probe);
	host_khz = tsc_khz;

	printf("1..%d\n", planned);
	printf("# seed %#" PRIx64 " (replay: tsc_state_fuzz -s %#" PRIx64 " -i %d%s%s%s), %d iterations\n",
	       rng_state, rng_state, iterations, base_ioctls ? " -b" : "", only ? " -c " : "",
	       only ? only : "", iterations);
	if (trace_kvm)
		start_trace();
	minivmm_bad_exit_hook = on_bad_exit;
#ifdef KVM_CAP_PRECISE_TSC
	c = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_PRECISE_TSC);
	if (!base_ioctls && c != ALL_FLAGS)
		printf("# KVM_CHECK_EXTENSION(KVM_CAP_PRECISE_TSC) = %#x, the model knows %#x\n",
		       c, ALL_FLAGS);
#endif
	old_tai = set_tai_offset(TAI_OFFSET_S);
	if (old_tai < 0)
		printf("# CLOCK_TAI offset left as is (not root): TAI/REALTIME mix-ups may not show\n");
	else
		printf("# CLOCK_TAI = CLOCK_REALTIME + %d s for the run (was + %d s)\n", TAI_OFFSET_S, old_tai);
	for (c = 0; c < NR_CASES; c++) {
		if (!selected(only, cases[c].name))
			continue;
#ifdef KVM_CAP_PRECISE_TSC
		if (!cases[c].run) {
			int st;

			for (st = 0; st < NR_STATES; st++)
				run_unit(cases[c].name, NULL, st);
			continue;
		}
#endif
		run_unit(cases[c].name, cases[c].run, 0);
	}
	if (trace_kvm)
		trace_write("tracing_on", "0");
	if (old_tai >= 0)
		set_tai_offset(old_tai);
	return failures ? 1 : 0;
}
