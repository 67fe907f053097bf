// SPDX-License-Identifier: GPL-2.0
/*
 * tsc_monitor: runs in a guest while the guest is live-migrated and reports
 * what the migration did to the guest's clocks.
 *
 * One sampler thread per online CPU, pinned to it, wakes every -i ms (all
 * on the same CLOCK_MONOTONIC grid), runs a short cross-CPU TSC warp check
 * (the kernel's check_tsc_warp(): TSC reads under a global lock must never
 * go backwards), reads back to back the TSC, CLOCK_MONOTONIC_RAW (kvm-clock
 * itself when that is the clocksource) and CLOCK_REALTIME, then the host's
 * CLOCK_REALTIME from the ptp_kvm device (PTP_SYS_OFFSET: a
 * KVM_HC_CLOCK_PAIRING hypercall on that vCPU) between two TSC reads.
 *
 * On "report" on stdin it finds, for each CPU, the longest stretch of host
 * time between two consecutive samples (the migration's downtime as the
 * host's clock saw it; the largest step back, if that is larger: a
 * destination host's clock behind the source's) and prints how far the
 * TSC, kvm-clock and the guest's CLOCK_REALTIME moved across it against
 * the host's clock, the warps seen, and the kernel log lines of the
 * clocksource watchdog.  Then a new round.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/ptp_clock.h>

#if !defined(__x86_64__)
#error "tsc_monitor reads the x86 TSC"
#endif

#define NSEC_PER_SEC		1000000000LL
#define NSEC_PER_MSEC		1000000LL
#define PTP_TRIES		3	/* PTP_SYS_OFFSET calls per sample, narrowest kept */
#define B2B_TRIES		5	/* back-to-back clock reads per sample, narrowest kept */
#define GAP_NEIGHBOURS		10	/* samples each side of the gap to pick the narrowest from */
#define WARP_ITERS		200	/* locked TSC reads per sample */
#define RING_MAX		200000	/* samples per CPU and round, at most */
#define RING_SLACK		1024
#define START_TIMEOUT_S		60	/* for every sampler's first sample */
#define AFTER_TIMEOUT_S		10	/* for a sample after "report" */
#define MAX_ERR_PRINTS		3	/* PTP errors printed per CPU and round */
#define KMSG_REC_MAX		(8192 + 1)

struct sample {
	uint64_t tsc;		/* midpoint of the TSC reads around mono_raw, rt */
	int64_t b2b_ns;		/* width of those TSC reads */
	int64_t mono_raw;	/* CLOCK_MONOTONIC_RAW */
	int64_t rt;		/* CLOCK_REALTIME */
	uint64_t ptp_tsc;	/* midpoint of the TSC reads around the PTP ioctl */
	int64_t host_ns;	/* the PTP device's time: host CLOCK_REALTIME */
	int64_t guest_ns;	/* midpoint of the ioctl's guest CLOCK_REALTIME reads */
	int64_t bracket_ns;	/* width of the ioctl: max(TSC reads, realtime reads) */
	int valid;		/* host_ns, guest_ns, ptp_tsc, bracket_ns are set */
};

struct sampler {
	int cpu;
	int idx;
	pthread_t thread;
	pthread_mutex_t lock;	/* the ring and the counters below it */
	struct sample *ring;
	unsigned long cap;
	unsigned long head;	/* next slot written */
	unsigned long count;	/* samples in the ring */
	unsigned long dropped;	/* samples of this round overwritten */
	unsigned long ptp_fail;	/* failed PTP ioctls this round */
	unsigned int err_prints;
	atomic_ulong taken;	/* samples ever taken */
	char err[256];
} __attribute__((aligned(64)));

struct result {
	unsigned long samples, dropped, ptp_fail;
	int ok;
	struct sample b, a;	/* the samples before and after the gap */
};

static struct {
	long khz;
	const char *ptp_dev;
	int ptp_fd;
	int fake_ptp;
	long interval_ms;
	long max_s;
} opt = { .ptp_dev = "/dev/ptp0", .ptp_fd = -1, .interval_ms = 20, .max_s = 600 };

static struct sampler *samplers;
static int nr_samplers;
static struct result *results;
static atomic_int fatal;
static atomic_int stop;
static int have_rdtscp;

/* the warp check: under warp_lock */
static pthread_spinlock_t warp_lock;
static uint64_t warp_last;
static int warp_last_cpu = -1;
static unsigned long warp_count, warp_checks;
static uint64_t warp_max;

/*
 * The kernel log: records with a sequence number above kmsg_start_seq were
 * logged after the program started.
 */
static int kmsg_fd = -1;
static int kmsg_have_start;
static unsigned long long kmsg_start_seq;
static char kmsg_rec[KMSG_REC_MAX];

static void __attribute__((noreturn, format(printf, 2, 3))) die(int rc, const char *fmt, ...)
{
	va_list ap;

	printf("e2e: error: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(rc);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tsc_monitor -k TSC_KHZ [-p PTP_DEV] [-i INTERVAL_MS] [-t MAX_SECONDS]\n"
		"  -k TSC_KHZ       the guest's TSC frequency in kHz (required)\n"
		"  -p PTP_DEV       the ptp_kvm device, the host's clock (default /dev/ptp0)\n"
		"  -i INTERVAL_MS   sampling interval (1-60000, default 20)\n"
		"  -t MAX_SECONDS   exit 3 after this long without a command (default 600)\n"
		"  -P               testing: use CLOCK_REALTIME via clock_gettime as the host\n"
		"                   clock instead of a PTP device (-p is ignored)\n"
		"Commands on stdin, one a line: report, quit (or EOF: exit 0).\n");
}

static void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "tsc_monitor: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	usage(stderr);
	exit(2);
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

static inline uint64_t rdtsc_ordered(void)
{
	uint32_t lo, hi;

	asm volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

static inline uint32_t rdtscp_aux(void)
{
	uint32_t lo, hi, aux;

	asm volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux) : : "memory");
	return aux;
}

static inline int64_t ts_ns(const struct timespec *ts)
{
	return ts->tv_sec * NSEC_PER_SEC + ts->tv_nsec;
}

static inline int64_t pct_ns(const struct ptp_clock_time *t)
{
	return t->sec * NSEC_PER_SEC + t->nsec;
}

static int64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return ts_ns(&ts);
}

static void sleep_ns(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / NSEC_PER_SEC, .tv_nsec = ns % NSEC_PER_SEC };

	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
}

static void sleep_until(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / NSEC_PER_SEC, .tv_nsec = ns % NSEC_PER_SEC };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* TSC cycles to ns at -k, rounded to the nearest ns */
static int64_t cyc2ns(int64_t cyc)
{
	__int128 n = (__int128)cyc * 1000000;

	if (n >= 0)
		return (int64_t)((n + opt.khz / 2) / opt.khz);
	return (int64_t)((n - opt.khz / 2) / opt.khz);
}

/* -P: three CLOCK_REALTIME reads in the ioctl's layout */
static void fake_sys_offset(struct ptp_sys_offset *off)
{
	struct timespec ts;
	int i;

	for (i = 0; i < 3; i++) {
		clock_gettime(CLOCK_REALTIME, &ts);
		off->ts[i].sec = ts.tv_sec;
		off->ts[i].nsec = ts.tv_nsec;
	}
}

static int sys_offset(struct ptp_sys_offset *off)
{
	memset(off, 0, sizeof(*off));
	off->n_samples = 1;
	if (opt.fake_ptp) {
		fake_sys_offset(off);
		return 0;
	}
	return ioctl(opt.ptp_fd, PTP_SYS_OFFSET, off);
}

/* The host's time and the TSC around it; the narrowest of PTP_TRIES. */
static int read_host(struct sampler *s, struct sample *x)
{
	struct ptp_sys_offset off;
	int i, ok = 0;

	for (i = 0; i < PTP_TRIES; i++) {
		int64_t before, after, width;
		uint64_t t0, t1;
		int r;

		t0 = rdtsc_ordered();
		r = sys_offset(&off);
		t1 = rdtsc_ordered();
		if (r) {
			s->ptp_fail++;
			if (s->err_prints < MAX_ERR_PRINTS) {
				s->err_prints++;
				fprintf(stderr, "tsc_monitor: cpu=%d PTP_SYS_OFFSET on %s: %s\n",
					s->cpu, opt.ptp_dev, strerror(errno));
			}
			break;
		}
		before = pct_ns(&off.ts[0]);
		after = pct_ns(&off.ts[2]);
		width = cyc2ns((int64_t)(t1 - t0));
		if (after - before > width)
			width = after - before;
		if (ok && width >= x->bracket_ns)
			continue;
		x->ptp_tsc = t0 + (t1 - t0) / 2;
		x->host_ns = pct_ns(&off.ts[1]);
		x->guest_ns = before + (after - before) / 2;
		x->bracket_ns = width;
		ok = 1;
	}
	return ok;
}

static void take_sample(struct sampler *s)
{
	struct sample *x = &s->ring[s->head];
	struct timespec mono_raw, rt;
	uint64_t t0, t1;
	int i;

	/*
	 * A vCPU preempted between the reads (the guest runs nested under
	 * emulation) would put its delay into the comparison of kvm-clock
	 * and the TSC: keep the narrowest of a few tries.
	 */
	x->b2b_ns = INT64_MAX;
	for (i = 0; i < B2B_TRIES; i++) {
		t0 = rdtsc_ordered();
		clock_gettime(CLOCK_MONOTONIC_RAW, &mono_raw);
		clock_gettime(CLOCK_REALTIME, &rt);
		t1 = rdtsc_ordered();
		if (cyc2ns((int64_t)(t1 - t0)) >= x->b2b_ns)
			continue;
		x->b2b_ns = cyc2ns((int64_t)(t1 - t0));
		x->tsc = t0 + (t1 - t0) / 2;
		x->mono_raw = ts_ns(&mono_raw);
		x->rt = ts_ns(&rt);
	}
	x->valid = read_host(s, x);

	s->head = (s->head + 1) % s->cap;
	if (s->count < s->cap)
		s->count++;
	else
		s->dropped++;
}

static void warp_check(int cpu)
{
	int i;

	for (i = 0; i < WARP_ITERS; i++) {
		uint64_t t;

		pthread_spin_lock(&warp_lock);
		t = rdtsc_ordered();
		if (warp_last_cpu >= 0 && warp_last_cpu != cpu)
			warp_checks++;
		if (t < warp_last) {
			warp_count++;
			if (warp_last - t > warp_max)
				warp_max = warp_last - t;
		}
		warp_last = t;
		warp_last_cpu = cpu;
		pthread_spin_unlock(&warp_lock);
	}
}

static int pin(struct sampler *s)
{
	cpu_set_t set;
	int r, cpu;

	CPU_ZERO(&set);
	CPU_SET(s->cpu, &set);
	r = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (r) {
		snprintf(s->err, sizeof(s->err), "cpu=%d: pthread_setaffinity_np: %s",
			 s->cpu, strerror(r));
		return -1;
	}
	cpu = sched_getcpu();
	if (cpu != s->cpu) {
		snprintf(s->err, sizeof(s->err), "cpu=%d: pinned, but sched_getcpu() says %d",
			 s->cpu, cpu);
		return -1;
	}
	/* Linux keeps (node << 12) | cpu in TSC_AUX */
	if (have_rdtscp && (int)(rdtscp_aux() & 0xfff) != s->cpu) {
		snprintf(s->err, sizeof(s->err), "cpu=%d: pinned, but rdtscp's TSC_AUX says %u",
			 s->cpu, rdtscp_aux() & 0xfff);
		return -1;
	}
	return 0;
}

static void *sampler_main(void *arg)
{
	struct sampler *s = arg;
	int64_t iv = opt.interval_ms * NSEC_PER_MSEC;
	/*
	 * Every CPU wakes on the same grid, so their warp checks overlap; then
	 * their PTP reads are spread over the first half of the interval, as
	 * the hypercalls would otherwise wait for each other.
	 */
	int64_t phase = iv / 2 * s->idx / nr_samplers;

	if (pin(s)) {
		atomic_store(&fatal, 1);
		return NULL;
	}
	while (!atomic_load(&stop)) {
		int64_t tick;

		warp_check(s->cpu);
		tick = now_ns(CLOCK_MONOTONIC) / iv * iv;
		if (phase)
			sleep_until(tick + phase);
		pthread_mutex_lock(&s->lock);
		take_sample(s);
		pthread_mutex_unlock(&s->lock);
		atomic_fetch_add(&s->taken, 1);
		sleep_until((now_ns(CLOCK_MONOTONIC) / iv + 1) * iv);
	}
	return NULL;
}

/* The online CPUs from sysfs ("0-1,4"); -1 if it cannot be read. */
static int online_cpus(int *cpus, int max)
{
	char buf[4096], *p = buf, *end;
	int n = 0;
	FILE *f;

	f = fopen("/sys/devices/system/cpu/online", "re");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	while (*p && *p != '\n') {
		long lo, hi;

		lo = strtol(p, &end, 10);
		if (end == p)
			return -1;
		hi = lo;
		p = end;
		if (*p == '-') {
			hi = strtol(p + 1, &end, 10);
			if (end == p + 1)
				return -1;
			p = end;
		}
		for (; lo <= hi; lo++) {
			if (n == max || lo < 0 || lo >= CPU_SETSIZE)
				return -1;
			cpus[n++] = (int)lo;
		}
		if (*p == ',')
			p++;
	}
	return n;
}

/* The kernel log, from /dev/kmsg */

static const char *const klog_words[] = { "clocksource", "unstable", "watchdog", "skew", "tsc:" };
/*
 * A complaint: the watchdog found the TSC off kvm-clock ("Clocksource
 * 'tsc' skewed ...", "Marking clocksource 'tsc' as unstable ...", "tsc:
 * Marking TSC unstable ...").  "Long readout interval, skipping watchdog
 * check" is not one: the watchdog saw both clocks jump (the downtime
 * carried into both) and skipped that interval; it is counted apart.
 */
static const char *const klog_complaint_words[] = { "unstable", "skewed", "Marking" };
static const char *const klog_skip_words[] = { "skipping watchdog check" };

static int contains_any(const char *msg, const char *const *words, size_t nr)
{
	size_t i;

	for (i = 0; i < nr; i++)
		if (strcasestr(msg, words[i]))
			return 1;
	return 0;
}

/* the next record into kmsg_rec; 0 when none is left (EAGAIN), -1 on errors */
static ssize_t kmsg_read(void)
{
	ssize_t n;

	for (;;) {
		n = read(kmsg_fd, kmsg_rec, sizeof(kmsg_rec) - 1);
		if (n > 0) {
			kmsg_rec[n] = 0;
			return n;
		}
		if (n == 0 || errno == EAGAIN)
			return 0;
		/* EPIPE: records were overwritten; the next read goes on */
		if (errno != EINTR && errno != EPIPE)
			return -1;
	}
}

/* "prio,seq,usec,flags[,...];message\n[ KEY=value\n...]": the message */
static const char *kmsg_parse(char *rec, unsigned int *prio, unsigned long long *seq,
			      unsigned long long *usec)
{
	char *msg = strchr(rec, ';'), *nl;

	if (!msg || sscanf(rec, "%u,%llu,%llu", prio, seq, usec) != 3)
		return NULL;
	msg++;
	nl = strchr(msg, '\n');
	if (nl)
		*nl = 0;
	return msg;
}

/*
 * Opens /dev/kmsg and notes its newest record: the complaints counted are
 * the ones logged after that, while the program ran, and not a boot's
 * (the boot-time lines are still printed in the first round).
 */
static void klog_init(void)
{
	unsigned long long seq, usec;
	unsigned int prio;
	ssize_t n;

	kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (kmsg_fd < 0) {
		fprintf(stderr, "tsc_monitor: warning: /dev/kmsg: %s: klog_complaints=-1\n",
			strerror(errno));
		return;
	}
	while ((n = kmsg_read()) > 0) {
		if (kmsg_parse(kmsg_rec, &prio, &seq, &usec)) {
			kmsg_start_seq = seq;
			kmsg_have_start = 1;
		}
	}
	if (n < 0 || lseek(kmsg_fd, 0, SEEK_SET) < 0) {
		fprintf(stderr, "tsc_monitor: warning: /dev/kmsg: %s: klog_complaints=-1\n",
			strerror(errno));
		close(kmsg_fd);
		kmsg_fd = -1;
	}
}

static void klog_report(unsigned int round)
{
	unsigned long long seq, usec;
	unsigned int prio, complaints = 0, skips = 0, boot_lines = 0;
	const char *msg;
	ssize_t n;

	if (kmsg_fd < 0) {
		printf("e2e: round=%u klog_complaints=-1\n", round);
		return;
	}
	/*
	 * Lines from before the monitor started are counted, not printed:
	 * the guest prints over an emulated UART, each byte an exit through
	 * two levels of virtualization, and the less it prints the better.
	 */
	while ((n = kmsg_read()) > 0) {
		msg = kmsg_parse(kmsg_rec, &prio, &seq, &usec);
		/* the kernel's own lines only: facility 0 */
		if (!msg || prio >> 3 || !contains_any(msg, klog_words, 5))
			continue;
		if (kmsg_have_start && seq <= kmsg_start_seq) {
			boot_lines++;
			continue;
		}
		printf("e2e: round=%u klog: [%5llu.%06llu] %s\n",
		       round, usec / 1000000, usec % 1000000, msg);
		if (contains_any(msg, klog_skip_words, 1))
			skips++;
		else if (contains_any(msg, klog_complaint_words, 3))
			complaints++;
	}
	if (n < 0)
		fprintf(stderr, "tsc_monitor: warning: read /dev/kmsg: %s\n", strerror(errno));
	if (boot_lines)
		printf("e2e: round=%u klog_before_start=%u\n", round, boot_lines);
	printf("e2e: round=%u klog_watchdog_skips=%u\n", round, skips);
	printf("e2e: round=%u klog_complaints=%u\n", round, complaints);
}

/* The report of a round */

/* every sampler has a sample taken after the command */
static void wait_for_new_samples(unsigned long *snap)
{
	int64_t deadline;
	int i;

	for (i = 0; i < nr_samplers; i++)
		snap[i] = atomic_load(&samplers[i].taken);
	sleep_ns(2 * opt.interval_ms * NSEC_PER_MSEC);
	deadline = now_ns(CLOCK_MONOTONIC) + AFTER_TIMEOUT_S * NSEC_PER_SEC;
	for (i = 0; i < nr_samplers; i++) {
		while (atomic_load(&samplers[i].taken) <= snap[i]) {
			if (now_ns(CLOCK_MONOTONIC) > deadline) {
				fprintf(stderr, "tsc_monitor: warning: cpu=%d took no sample in %d s\n",
					samplers[i].cpu, AFTER_TIMEOUT_S);
				break;
			}
			sleep_ns(NSEC_PER_MSEC);
		}
	}
}

/*
 * The valid sample with the narrowest PTP bracket among the n valid ones
 * from index i on, going in direction dir (+1, -1): a vCPU preempted in
 * the middle of the host-clock read (under emulation, milliseconds) would
 * put its delay into the figures.  The TSC and L1's clock run at the same
 * rate, so which sample of either side is taken does not matter beyond
 * the ppm of the calibration (20 ms a sample).
 */
static const struct sample *narrowest(const struct sampler *s, unsigned long first,
				      long i, int dir, int n)
{
	const struct sample *best = NULL;

	for (; i >= 0 && i < (long)s->count && n > 0; i += dir) {
		const struct sample *x = &s->ring[(first + i) % s->cap];

		if (!x->valid)
			continue;
		n--;
		if (!best || x->bracket_ns < best->bracket_ns)
			best = x;
	}
	return best;
}

/* Under s->lock: the gap of the round's samples, then a new round. */
static void collect(struct sampler *s, struct result *r)
{
	unsigned long i, first = (s->head + s->cap - s->count) % s->cap;
	const struct sample *prev = NULL, *b = NULL, *a = NULL;
	long prev_i = -1, gap_b = -1, gap_a = -1;
	int64_t best = -1, d;

	for (i = 0; i < s->count; i++) {
		const struct sample *x = &s->ring[(first + i) % s->cap];

		if (!x->valid)
			continue;
		/*
		 * The largest step of the host's clock either way: a guest
		 * migrated to a host whose clock is behind the source's by
		 * more than the downtime sees it go back.
		 */
		d = prev ? x->host_ns - prev->host_ns : 0;
		if (prev && (d < 0 ? -d : d) > best) {
			best = d < 0 ? -d : d;
			gap_b = prev_i;
			gap_a = i;
		}
		prev = x;
		prev_i = i;
	}
	if (gap_b >= 0) {
		b = narrowest(s, first, gap_b, -1, GAP_NEIGHBOURS);
		a = narrowest(s, first, gap_a, 1, GAP_NEIGHBOURS);
	}
	r->samples = s->count;
	r->dropped = s->dropped;
	r->ptp_fail = s->ptp_fail;
	r->ok = b != NULL;
	if (b) {
		r->b = *b;
		r->a = *a;
	}
	s->head = 0;
	s->count = 0;
	s->dropped = 0;
	s->ptp_fail = 0;
	s->err_prints = 0;
}

static void print_result(unsigned int round, const struct sampler *s, const struct result *r)
{
	const struct sample *b = &r->b, *a = &r->a;
	int64_t gap, tsc_jump, mono_jump, b2b_tsc_jump, bracket, b2b;

	if (r->dropped)
		fprintf(stderr, "tsc_monitor: warning: round=%u cpu=%d: ring full, the oldest %lu samples dropped\n",
			round, s->cpu, r->dropped);
	if (!r->ok) {
		printf("e2e: round=%u cpu=%d error=no-samples\n", round, s->cpu);
		return;
	}
	gap = a->host_ns - b->host_ns;
	tsc_jump = cyc2ns((int64_t)(a->ptp_tsc - b->ptp_tsc));
	mono_jump = a->mono_raw - b->mono_raw;
	b2b_tsc_jump = cyc2ns((int64_t)(a->tsc - b->tsc));
	bracket = a->bracket_ns > b->bracket_ns ? a->bracket_ns : b->bracket_ns;
	b2b = a->b2b_ns > b->b2b_ns ? a->b2b_ns : b->b2b_ns;
	printf("e2e: round=%u cpu=%d samples=%lu gap_host_ns=%" PRId64 " tsc_jump_ns=%" PRId64
	       " tsc_err_ns=%" PRId64 " mono_jump_ns=%" PRId64 " kvmclock_tsc_ns=%" PRId64
	       " rt_err_before_ns=%" PRId64 " rt_err_after_ns=%" PRId64 " bracket_ns=%" PRId64
	       " b2b_ns=%" PRId64 " ptp_fail=%lu\n",
	       round, s->cpu, r->samples, gap, tsc_jump, tsc_jump - gap, mono_jump,
	       mono_jump - b2b_tsc_jump, b->guest_ns - b->host_ns, a->guest_ns - a->host_ns,
	       bracket, b2b, r->ptp_fail);
}

static void report(unsigned int round, unsigned long *snap)
{
	unsigned long warps, checks;
	uint64_t max_warp;
	int i;

	wait_for_new_samples(snap);
	/* freeze: a sampler holds its lock while it takes a sample */
	for (i = 0; i < nr_samplers; i++)
		pthread_mutex_lock(&samplers[i].lock);
	pthread_spin_lock(&warp_lock);
	warps = warp_count;
	max_warp = warp_max;
	checks = warp_checks;
	warp_count = 0;
	warp_max = 0;
	warp_checks = 0;
	pthread_spin_unlock(&warp_lock);
	for (i = 0; i < nr_samplers; i++)
		collect(&samplers[i], &results[i]);
	for (i = 0; i < nr_samplers; i++)
		pthread_mutex_unlock(&samplers[i].lock);

	for (i = 0; i < nr_samplers; i++)
		print_result(round, &samplers[i], &results[i]);
	printf("e2e: round=%u warps=%lu max_warp_cycles=%" PRIu64 " cross_checks=%lu\n",
	       round, warps, max_warp, checks);
	klog_report(round);
	printf("e2e: round=%u done\n", round);
	fflush(stdout);
}

/* "quit" or EOF: the samplers end after their current sample */
static void __attribute__((noreturn)) finish(void)
{
	int i;

	fflush(stdout);
	atomic_store(&stop, 1);
	for (i = 0; i < nr_samplers; i++) {
		pthread_join(samplers[i].thread, NULL);
		pthread_mutex_destroy(&samplers[i].lock);
		free(samplers[i].ring);
	}
	free(samplers);
	free(results);
	exit(0);
}

/* Commands */

enum { CMD_NONE, CMD_REPORT, CMD_QUIT };

/*
 * The commands come over the guest's serial console, which a migration
 * disturbs (a break is a SIGINT, a carrier drop a hangup: EOF from then
 * on).  Only "quit" and the -t timeout end the monitor: a signal of the
 * terminal is counted and reported, and a hangup reopens the terminal.
 */
static volatile sig_atomic_t tty_signals[NSIG];
static char stdin_path[256];

static void note_signal(int sig)
{
	tty_signals[sig]++;
}

static void report_signals(void)
{
	static const int sigs[] = { SIGINT, SIGHUP, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU };
	unsigned int i;

	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		if (!tty_signals[sigs[i]])
			continue;
		printf("tsc_monitor: warning: got signal %d (%s) %d times from the terminal\n",
		       sigs[i], strsignal(sigs[i]), (int)tty_signals[sigs[i]]);
		tty_signals[sigs[i]] = 0;
		fflush(stdout);
	}
}

/* CLOCAL: a carrier drop on the console does not hang it up */
static void tty_local(int fd)
{
	struct termios t;

	if (tcgetattr(fd, &t))
		return;
	if (!(t.c_cflag & CLOCAL)) {
		t.c_cflag |= CLOCAL;
		if (tcsetattr(fd, TCSANOW, &t))
			printf("tsc_monitor: warning: cannot set CLOCAL on stdin: %s\n", strerror(errno));
	}
}

static void setup_stdin(void)
{
	static const int sigs[] = { SIGINT, SIGHUP, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU };
	struct sigaction sa = { .sa_handler = note_signal };
	ssize_t n;
	unsigned int i;

	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	n = readlink("/proc/self/fd/0", stdin_path, sizeof(stdin_path) - 1);
	stdin_path[n > 0 ? n : 0] = 0;
	tty_local(0);
}

/* EOF or an error on a terminal: hung up; open it again */
static int reopen_stdin(const char *why)
{
	int fd;

	printf("tsc_monitor: warning: %s on stdin (%s): reopening it\n", why,
	       stdin_path[0] ? stdin_path : "?");
	fflush(stdout);
	if (!stdin_path[0] || !isatty(0))
		return -1;
	fd = open(stdin_path, O_RDWR | O_NOCTTY);
	if (fd < 0)
		return -1;
	dup2(fd, 0);
	close(fd);
	tty_local(0);
	usleep(100000);
	return 0;
}

static int parse_command(char *line)
{
	char *p = line, *e;

	while (*p == ' ' || *p == '\t')
		p++;
	e = p + strlen(p);
	while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = 0;
	if (!*p)
		return CMD_NONE;
	if (!strcmp(p, "report"))
		return CMD_REPORT;
	if (!strcmp(p, "quit"))
		return CMD_QUIT;
	for (e = p; *e; e++)
		if (*e < 0x20 || *e > 0x7e || *e == '\'')
			*e = '?';
	printf("tsc_monitor: ignored '%s'\n", p);
	fflush(stdout);
	return CMD_NONE;
}

static void __attribute__((noreturn)) command_loop(void)
{
	unsigned long *snap = calloc(nr_samplers, sizeof(*snap));
	int64_t deadline = now_ns(CLOCK_MONOTONIC) + opt.max_s * NSEC_PER_SEC;
	char buf[512], line[256];
	unsigned int round = 1;
	size_t len = 0;

	if (!snap)
		die(1, "out of memory");
	for (;;) {
		struct pollfd pfd = { .fd = 0, .events = POLLIN };
		int64_t left = deadline - now_ns(CLOCK_MONOTONIC);
		ssize_t n, i;
		int r;

		if (left <= 0)
			die(3, "no command in %ld s", opt.max_s);
		r = poll(&pfd, 1, (int)((left + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC));
		report_signals();
		if (r < 0 && errno != EINTR)
			die(1, "poll stdin: %s", strerror(errno));
		if (r <= 0)
			continue;
		n = read(0, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0 && isatty(0)) {
			if (reopen_stdin(n ? strerror(errno) : "EOF"))
				die(1, "cannot reopen stdin %s: %s", stdin_path, strerror(errno));
			continue;
		}
		if (n < 0)
			die(1, "read stdin: %s", strerror(errno));
		/* at EOF, a last line without its newline still counts */
		for (i = 0; i <= n; i++) {
			int cmd;

			if (i < n && buf[i] != '\n' && buf[i] != '\r') {
				if (len < sizeof(line) - 1)
					line[len++] = buf[i];
				continue;
			}
			if (i == n && (n || !len))
				break;
			line[len] = 0;
			len = 0;
			cmd = parse_command(line);
			if (cmd == CMD_QUIT)
				break;
			if (cmd == CMD_REPORT) {
				report(round, snap);
				round++;
				printf("tsc_monitor: ready round=%u\n", round);
				fflush(stdout);
				deadline = now_ns(CLOCK_MONOTONIC) + opt.max_s * NSEC_PER_SEC;
			}
		}
		if (!n || i < n) {
			free(snap);
			finish();
		}
	}
}

int main(int argc, char **argv)
{
	static int cpus[CPU_SETSIZE];
	unsigned int eax, ebx, ecx, edx;
	struct ptp_sys_offset off;
	int64_t deadline;
	unsigned long cap;
	long nr_online;
	int c, i, n;

	opterr = 0;
	while ((c = getopt(argc, argv, ":k:p:i:t:Ph")) != -1) {
		switch (c) {
		case 'k':
			opt.khz = parse_num(optarg, "-k TSC_KHZ", 1, 100000000);
			break;
		case 'p':
			opt.ptp_dev = optarg;
			break;
		case 'i':
			opt.interval_ms = parse_num(optarg, "-i INTERVAL_MS", 1, 60000);
			break;
		case 't':
			opt.max_s = parse_num(optarg, "-t MAX_SECONDS", 1, 864000);
			break;
		case 'P':
			opt.fake_ptp = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			usage_error("option -%c needs an argument", optopt);
		default:
			usage_error("unknown option -%c", optopt);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!opt.khz)
		usage_error("-k TSC_KHZ is required");
	setvbuf(stdout, NULL, _IOLBF, 0);

	have_rdtscp = __get_cpuid(0x80000001, &eax, &ebx, &ecx, &edx) && (edx & (1u << 27));

	if (opt.fake_ptp) {
		opt.ptp_dev = "CLOCK_REALTIME (-P)";
	} else {
		opt.ptp_fd = open(opt.ptp_dev, O_RDONLY | O_CLOEXEC);
		if (opt.ptp_fd < 0)
			die(2, "cannot open PTP device %s: %s (is ptp_kvm loaded?)",
			    opt.ptp_dev, strerror(errno));
		if (sys_offset(&off))
			die(2, "PTP_SYS_OFFSET on %s: %s", opt.ptp_dev, strerror(errno));
	}
	klog_init();

	nr_online = sysconf(_SC_NPROCESSORS_ONLN);
	n = online_cpus(cpus, CPU_SETSIZE);
	if (n <= 0) {
		if (nr_online < 1 || nr_online > CPU_SETSIZE)
			die(1, "cannot tell the online CPUs");
		n = (int)nr_online;
		for (i = 0; i < n; i++)
			cpus[i] = i;
	} else if (n != nr_online) {
		fprintf(stderr, "tsc_monitor: warning: %d CPUs in /sys/devices/system/cpu/online, sysconf says %ld\n",
			n, nr_online);
	}
	nr_samplers = n;

	cap = opt.max_s * 1000 / opt.interval_ms + RING_SLACK;
	if (cap > RING_MAX)
		cap = RING_MAX;
	samplers = aligned_alloc(64, nr_samplers * sizeof(*samplers));
	results = calloc(nr_samplers, sizeof(*results));
	if (!samplers || !results)
		die(1, "out of memory");
	memset(samplers, 0, nr_samplers * sizeof(*samplers));
	pthread_spin_init(&warp_lock, PTHREAD_PROCESS_PRIVATE);
	for (i = 0; i < nr_samplers; i++) {
		struct sampler *s = &samplers[i];

		s->cpu = cpus[i];
		s->idx = i;
		s->cap = cap;
		s->ring = malloc(cap * sizeof(*s->ring));
		if (!s->ring)
			die(1, "out of memory for %lu samples", cap);
		/* fault the ring in now, not while sampling (not 0: no calloc) */
		memset(s->ring, 0xff, cap * sizeof(*s->ring));
		pthread_mutex_init(&s->lock, NULL);
		atomic_init(&s->taken, 0);
	}
	for (i = 0; i < nr_samplers; i++) {
		int r = pthread_create(&samplers[i].thread, NULL, sampler_main, &samplers[i]);

		if (r)
			die(1, "pthread_create: %s", strerror(r));
	}

	deadline = now_ns(CLOCK_MONOTONIC) + START_TIMEOUT_S * NSEC_PER_SEC;
	for (i = 0; i < nr_samplers; ) {
		if (atomic_load(&fatal)) {
			for (i = 0; i < nr_samplers; i++)
				if (samplers[i].err[0])
					printf("e2e: error: %s\n", samplers[i].err);
			fflush(stdout);
			exit(2);
		}
		if (atomic_load(&samplers[i].taken)) {
			i++;
			continue;
		}
		if (now_ns(CLOCK_MONOTONIC) > deadline)
			die(1, "cpu=%d took no sample in %d s", samplers[i].cpu, START_TIMEOUT_S);
		sleep_ns(NSEC_PER_MSEC);
	}
	/* tsc: this CPU's TSC when ready, for a test of the TSC after a reset */
	printf("tsc_monitor: ready cpus=%d khz=%ld interval_ms=%ld tsc=%llu\n",
	       nr_samplers, opt.khz, opt.interval_ms,
	       (unsigned long long)rdtsc_ordered());
	fflush(stdout);
	setup_stdin();
	command_loop();
}
