// SPDX-License-Identifier: GPL-2.0
/*
 * Bounded fuzz and concurrency tests of KVM_GET_TSC_STATE and
 * KVM_SET_TSC_STATE, in KTAP: hostile struct contents on vCPUs in every
 * state, an info-leak check, concurrent GET/SET/MSR/clock ioctls while the
 * vCPUs run, CLOCK_REALTIME steps between calls, and fds closed under a
 * thread that is inside the ioctls.  Every call must return 0 or a
 * documented errno, and a failed SET must change nothing.  The PRNG seed
 * is printed; pass it back with -s to replay a run.  Bounded by iteration
 * counts; a watchdog fails the run if it does not finish (deadlock).
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>

#define MINIVMM_NAME "tsc_state_fuzz"
#include "minivmm.h"

#define WATCHDOG_S	600

static uint64_t rng_state;
static int iterations = 2000;
static int failures;

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

struct tsc_snapshot {
	uint64_t offset;
	uint64_t adjust;
};

static uint64_t get_adjust(struct vm *vm, int i)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = MSR_IA32_TSC_ADJUST };

	if (ioctl(vm->vcpu_fd[i], KVM_GET_MSRS, &m) != 1)
		die("KVM_GET_MSRS(TSC_ADJUST): %s", strerror(errno));
	return m.e.data;
}

static struct tsc_snapshot snapshot(struct vm *vm, int i)
{
	return (struct tsc_snapshot) { get_offset(vm, i), get_adjust(vm, i) };
}

/* A hostile struct: mostly plausible, often extreme, sometimes garbage. */
static void random_state(uint64_t *s, struct kvm_tsc_state *st, uint64_t now)
{
	static const uint64_t extremes[] = {
		0, 1, UINT64_MAX, UINT64_MAX - 1, 1ull << 63, (1ull << 63) - 1,
		1ull << 62, 1ull << 58,
	};
	uint64_t r = rnd(s);

	memset(st, 0, sizeof(*st));
	st->flags = (r & 7) ? (rnd(s) & 3) : (uint32_t)rnd(s);
	if ((r >> 3 & 15) == 0)
		st->pad = rnd(s);
	if ((r >> 7 & 15) == 0)
		st->reserved[rnd(s) % 4] = rnd(s) | 1;
	switch (r >> 11 & 3) {
	case 0:
		st->nsec = now + (int64_t)(rnd(s) % 20000000000ull) - 10000000000ll;
		break;
	case 1:
		st->nsec = extremes[rnd(s) % 8];
		break;
	case 2:
		st->nsec = now + (int64_t)(rnd(s) % (730ull * 24 * 3600 * 1000000000ull)) * ((r & 1) ? -1 : 1);
		break;
	default:
		st->nsec = rnd(s);
	}
	st->tsc = (r >> 13 & 1) ? extremes[rnd(s) % 8] : rnd(s) >> (rnd(s) % 64);
	st->tsc_adjust = (r >> 14 & 1) ? extremes[rnd(s) % 8] : rnd(s);
}

static bool documented_errno(int e)
{
	return e == EINVAL || e == ERANGE || e == EFAULT;
}

/* GET into a buffer full of @pattern: every undefined byte must be zero. */
static bool get_no_leak(struct vm *vm, int i, uint8_t pattern, char *why, size_t len)
{
	struct kvm_tsc_state st;
	size_t k;

	memset(&st, pattern, sizeof(st));
	if (ioctl(vm->vcpu_fd[i], KVM_GET_TSC_STATE, &st)) {
		snprintf(why, len, "GET failed: %s", strerror(errno));
		return false;
	}
	if (st.pad) {
		snprintf(why, len, "pad = %#x", st.pad);
		return false;
	}
	for (k = 0; k < sizeof(st.reserved); k++) {
		if (((uint8_t *)st.reserved)[k]) {
			snprintf(why, len, "reserved byte %zu = %#x", k, ((uint8_t *)st.reserved)[k]);
			return false;
		}
	}
	if (!(st.flags & KVM_TSC_STATE_TSC_ADJUST_VALID) && st.tsc_adjust) {
		snprintf(why, len, "tsc_adjust %#llx without TSC_ADJUST_VALID", st.tsc_adjust);
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

enum vcpu_state { FRESH, RAN, HALTED, SET_TSC_KHZ, NR_STATES };
static const char *const state_names[] = { "never run", "after KVM_RUN", "halted", "after KVM_SET_TSC_KHZ" };

static void fuzz(enum vcpu_state state)
{
	uint64_t s = rng_state ^ (0x9e3779b97f4a7c15ull * (state + 1));
	int n = iterations / NR_STATES, it, bad = 0, ok = 0, einval = 0, erange = 0, efault = 0;
	char why[160] = "", name[64];
	struct vm vm;

	create_vm(&vm, 2, state == HALTED ? VM_IRQCHIP : 0);
	switch (state) {
	case RAN:
		guest_read_tsc(&vm, 0);
		break;
	case HALTED:
		halt_vcpu(&vm);
		break;
	case SET_TSC_KHZ:
		/* Without TSC scaling KVM may refuse a new rate: either is fine. */
		ioctl(vm.vcpu_fd[0], KVM_SET_TSC_KHZ, tsc_khz + 1000);
		break;
	default:
		break;
	}
	for (it = 0; it < n && !bad; it++) {
		struct kvm_tsc_state st;
		struct tsc_snapshot before, after;
		void *arg = &st;
		int r;

		random_state(&s, &st, now_ns(CLOCK_REALTIME));
		if (rnd(&s) % 64 == 0)
			arg = (rnd(&s) & 1) ? NULL : (void *)(uintptr_t)(rnd(&s) | 1);
		before = snapshot(&vm, 0);
		r = ioctl(vm.vcpu_fd[0], KVM_SET_TSC_STATE, arg);
		if (!r) {
			ok++;
		} else if (!documented_errno(errno)) {
			snprintf(why, sizeof(why), "iteration %d: SET returned errno %d", it, errno);
			bad++;
		} else {
			einval += errno == EINVAL;
			erange += errno == ERANGE;
			efault += errno == EFAULT;
			after = snapshot(&vm, 0);
			if (after.offset != before.offset || after.adjust != before.adjust) {
				snprintf(why, sizeof(why),
					 "iteration %d: failed SET (errno %d) changed offset %#" PRIx64
					 " -> %#" PRIx64 " or adjust %#" PRIx64 " -> %#" PRIx64,
					 it, errno, before.offset, after.offset, before.adjust, after.adjust);
				bad++;
			}
		}
		if (!bad && !get_no_leak(&vm, it & 1, (uint8_t)rnd(&s), why, sizeof(why)))
			bad++;
		if (rnd(&s) % 8 == 0)
			guest_read_tsc(&vm, 1);	/* renew the VM's reference now and then */
	}
	printf("# fuzz, vCPU %s: %d calls: %d ok, %d EINVAL, %d ERANGE, %d EFAULT\n",
	       state_names[state], it, ok, einval, erange, efault);
	snprintf(name, sizeof(name), "fuzz_%s", state == FRESH ? "fresh" : state == RAN ? "ran" :
		 state == HALTED ? "halted" : "set_tsc_khz");
	report(!bad && ok && einval && erange, name, "%s", bad ? why : "some outcome never seen");
	destroy_vm(&vm);
}

/* Concurrency: everything at once on one VM while its vCPUs run. */
struct conc {
	struct vm *vm;
	int id;
	int iters;
	int bad_errno;
	char why[128];
};

static void *vcpu_runner(void *p)
{
	struct conc *c = p;
	int i;

	for (i = 0; i < c->iters; i++)
		guest_read_tsc(c->vm, c->id);
	return NULL;
}

static void *state_hammer(void *p)
{
	struct conc *c = p;
	uint64_t s = rng_state + c->id * 7919;
	int i;

	for (i = 0; i < c->iters; i++) {
		int v = rnd(&s) % c->vm->nr_vcpus;
		struct kvm_tsc_state st;

		if (ioctl(c->vm->vcpu_fd[v], KVM_GET_TSC_STATE, &st)) {
			c->bad_errno = errno;
			snprintf(c->why, sizeof(c->why), "GET: %s", strerror(errno));
			return NULL;
		}
		if (rnd(&s) & 1)
			random_state(&s, &st, now_ns(CLOCK_REALTIME));
		if (ioctl(c->vm->vcpu_fd[v], KVM_SET_TSC_STATE, &st) && !documented_errno(errno)) {
			c->bad_errno = errno;
			snprintf(c->why, sizeof(c->why), "SET: %s", strerror(errno));
			return NULL;
		}
	}
	return NULL;
}

static void *msr_hammer(void *p)
{
	struct conc *c = p;
	uint64_t s = rng_state ^ 0x5a5a;
	int i;

	for (i = 0; i < c->iters; i++) {
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

	for (i = 0; i < c->iters; i++) {
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

	create_vm(&vm, RUNNERS, VM_DISABLE_TSC_QUIRK);
	for (i = 0; i < RUNNERS; i++, n++) {
		c[n] = (struct conc) { .vm = &vm, .id = i, .iters = it };
		pthread_create(&t[n], NULL, vcpu_runner, &c[n]);
	}
	for (i = 0; i < HAMMERS; i++, n++) {
		c[n] = (struct conc) { .vm = &vm, .id = i + 1, .iters = it };
		pthread_create(&t[n], NULL, state_hammer, &c[n]);
	}
	c[n] = (struct conc) { .vm = &vm, .iters = it };
	pthread_create(&t[n], NULL, msr_hammer, &c[n]);
	n++;
	c[n] = (struct conc) { .vm = &vm, .iters = it / 4 };
	pthread_create(&t[n], NULL, clock_hammer, &c[n]);
	n++;
	for (i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		if (c[i].bad_errno && !bad) {
			snprintf(why, sizeof(why), "%s", c[i].why);
			bad++;
		}
	}
	/*
	 * Quiesced: any serial order ends in a state where GET then SET of
	 * what GET returned changes nothing.
	 */
	for (i = 0; i < RUNNERS && !bad; i++) {
		struct tsc_snapshot before = snapshot(&vm, i), after;
		struct kvm_tsc_state st;

		xioctl(vm.vcpu_fd[i], KVM_GET_TSC_STATE, &st, "KVM_GET_TSC_STATE");
		xioctl(vm.vcpu_fd[i], KVM_SET_TSC_STATE, &st, "KVM_SET_TSC_STATE");
		after = snapshot(&vm, i);
		if (before.offset != after.offset || before.adjust != after.adjust) {
			snprintf(why, sizeof(why), "vCPU %d: GET+SET moved offset %#" PRIx64 " -> %#" PRIx64,
				 i, before.offset, after.offset);
			bad++;
		}
	}
	printf("# concurrency: %d vCPU runners x %d runs, %d GET/SET threads x %d, 1 MSR thread x %d, 1 clock thread x %d: %.1f s\n",
	       RUNNERS, it, HAMMERS, it, it, it / 4, (now_ns(CLOCK_MONOTONIC) - start) / 1e9);
	report(!bad, "concurrency", "%s", why);
	destroy_vm(&vm);
}

/* CLOCK_REALTIME stepped back and forth between calls. */
static void clock_steps(void)
{
	uint64_t s = rng_state ^ 0xc10c, real0 = now_ns(CLOCK_REALTIME), mono0 = now_ns(CLOCK_MONOTONIC);
	int i, bad = 0, n = iterations / 10;
	char why[128] = "";
	struct vm vm;

	if (geteuid()) {
		case_num++;
		printf("ok %d clock_steps # SKIP needs root to step CLOCK_REALTIME\n", case_num);
		return;
	}
	create_vm(&vm, 2, VM_DISABLE_TSC_QUIRK);
	for (i = 0; i < n && !bad; i++) {
		struct kvm_tsc_state st;
		int64_t step = (int64_t)(rnd(&s) % 20000000000ull) - 10000000000ll;
		uint64_t t = now_ns(CLOCK_REALTIME) + step;
		struct timespec ts = { t / 1000000000ull, t % 1000000000ull };

		if (clock_settime(CLOCK_REALTIME, &ts))
			die("clock_settime: %s", strerror(errno));
		if (ioctl(vm.vcpu_fd[i & 1], KVM_GET_TSC_STATE, &st) ||
		    ioctl(vm.vcpu_fd[!(i & 1)], KVM_SET_TSC_STATE, &st)) {
			snprintf(why, sizeof(why), "step %" PRId64 " ns: %s", step, strerror(errno));
			bad++;
		}
		if (rnd(&s) & 1)
			guest_read_tsc(&vm, i & 1);
	}
	{
		uint64_t t = real0 + (now_ns(CLOCK_MONOTONIC) - mono0);
		struct timespec ts = { t / 1000000000ull, t % 1000000000ull };

		clock_settime(CLOCK_REALTIME, &ts);
	}
	printf("# clock steps: %d steps of up to +-10 s between GET and SET, clock put back\n", i);
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
	struct kvm_tsc_state st;

	while (!l->stop) {
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

static void watchdog(int sig)
{
	(void)sig;
	printf("Bail out! watchdog: not finished after %d s (deadlock?)\n", WATCHDOG_S);
	fflush(stdout);
	_exit(1);
}

int main(int argc, char **argv)
{
	struct vm probe;
	int c, st;

	rng_state = now_ns(CLOCK_REALTIME) | 1;
	while ((c = getopt(argc, argv, "s:i:")) != -1) {
		switch (c) {
		case 's':
			rng_state = strtoull(optarg, NULL, 0) | 1;
			break;
		case 'i':
			iterations = atoi(optarg);
			if (iterations < 40)
				usage_error("-i wants at least 40 iterations");
			break;
		default:
			usage_error("usage: tsc_state_fuzz [-s SEED] [-i ITERATIONS]");
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, watchdog);
	alarm(WATCHDOG_S);

	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0)
		die("/dev/kvm: %s", strerror(errno));
	run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	printf("TAP version 13\n");
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_PRECISE_TSC) <= 0) {
		printf("1..0 # SKIP KVM_CAP_PRECISE_TSC not supported\n");
		return 4;
	}
	create_vm(&probe, 1, 0);
	tsc_khz = ioctl(probe.vcpu_fd[0], KVM_GET_TSC_KHZ, 0);
	destroy_vm(&probe);

	printf("1..%d\n", NR_STATES + 3);
	printf("# seed %#" PRIx64 " (replay: tsc_state_fuzz -s %#" PRIx64 " -i %d), %d iterations\n",
	       rng_state, rng_state, iterations, iterations);
	for (st = 0; st < NR_STATES; st++)
		fuzz(st);
	concurrency();
	clock_steps();
	lifetime();
	return failures ? 1 : 0;
}
