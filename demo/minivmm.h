/* SPDX-License-Identifier: GPL-2.0 */
/*
 * minivmm.h: the smallest VMM the TSC tools need, on the plain KVM API.
 * A real-mode guest at CODE_GPA reads its TSC in a loop and reports it
 * with two OUTs (PORT_TSC_LO, PORT_TSC_HI); helpers create VMs and vCPUs,
 * run a vCPU until it reports a TSC, and read or write TSC offsets.
 * Errors end the program with one line on stderr.  Used by
 * demo/tsc_migrate.c, harness/guest/tsc_state_fuzz.c and
 * harness/guest/tsc_clock_steps.c.
 */
#ifndef MINIVMM_H
#define MINIVMM_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#ifndef MINIVMM_NAME
#define MINIVMM_NAME "minivmm"
#endif

#define MAX_VCPUS	256
#define MEM_SIZE	0x10000
#define CODE_GPA	0x1000
#define PORT_TSC_LO	0x10
#define PORT_TSC_HI	0x11
#define MSR_IA32_TSC	0x10
#define MSR_IA32_TSC_ADJUST 0x3b

struct vm {
	int fd;
	int nr_vcpus;
	int vcpu_fd[MAX_VCPUS];
	struct kvm_run *run[MAX_VCPUS];
	void *mem;
};

static int kvm_fd;
static int run_size;
static uint32_t tsc_khz;

/* One line on stderr, then exit: 1 for runtime errors, 2 for usage errors. */
static inline void __attribute__((noreturn, format(printf, 3, 0)))
vexit(int status, const char *suffix, const char *fmt, va_list ap)
{
	fprintf(stderr, MINIVMM_NAME ": ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "%s\n", suffix);
	exit(status);
}

static inline void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vexit(1, "", fmt, ap);
}

static inline void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vexit(2, " (see --help)", fmt, ap);
}

static inline int xioctl(int fd, unsigned long req, void *arg, const char *what)
{
	int r = ioctl(fd, req, arg);

	if (r < 0)
		die("%s: %s", what, strerror(errno));
	return r;
}

static inline uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static inline void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (ms > 0 && nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* rdtsc; out 0x10, eax; mov eax, edx; out 0x11, eax; jmp back (real mode). */
static const uint8_t guest_code[] = {
	0x0f, 0x31,
	0x66, 0xe7, PORT_TSC_LO,
	0x66, 0x89, 0xd0,
	0x66, 0xe7, PORT_TSC_HI,
	0xeb, 0xf3,
};

/* The host TSC, ordered against earlier loads as the kernel's rdtsc_ordered(). */
static inline uint64_t rdtsc_ordered(void)
{
	uint32_t lo, hi;

	__asm__ __volatile__("lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
	return (uint64_t)hi << 32 | lo;
}

static inline void setup_vcpu(struct vm *vm, int i, struct kvm_cpuid2 *cpuid)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = CODE_GPA, .rflags = 2 };
	int fd;

	fd = ioctl(vm->fd, KVM_CREATE_VCPU, i);
	if (fd < 0)
		die("KVM_CREATE_VCPU %d: %s", i, strerror(errno));
	vm->vcpu_fd[i] = fd;
	vm->run[i] = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (vm->run[i] == MAP_FAILED)
		die("mmap kvm_run: %s", strerror(errno));
	xioctl(fd, KVM_SET_CPUID2, cpuid, "KVM_SET_CPUID2");
	xioctl(fd, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	xioctl(fd, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
	xioctl(fd, KVM_SET_REGS, &regs, "KVM_SET_REGS");
}

static inline struct kvm_cpuid2 *supported_cpuid(void)
{
	int n = 256;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	c->nent = n;
	xioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c, "KVM_GET_SUPPORTED_CPUID");
	return c;
}

/* create_vm() flags */
#define VM_DISABLE_TSC_QUIRK	(1 << 0)	/* disable KVM_X86_QUIRK_TSC_HOST_ACCESS */
#define VM_IRQCHIP		(1 << 1)	/* in-kernel LAPIC, so HLT halts in KVM */
#define VM_NO_TSC_ADJUST	(1 << 2)	/* guest CPUID without TSC_ADJUST */
#define VM_TSC_DEADLINE		(1 << 3)	/* with VM_IRQCHIP: the TSC-deadline timer in CPUID */

/* CPUID leaf @function, subleaf 0: the entry, or NULL. */
static inline struct kvm_cpuid_entry2 *cpuid_leaf(struct kvm_cpuid2 *c, uint32_t function)
{
	unsigned int i;

	for (i = 0; i < c->nent; i++)
		if (c->entries[i].function == function && c->entries[i].index == 0)
			return &c->entries[i];
	return NULL;
}

/* CPUID.(EAX=7,ECX=0):EBX[1], TSC_ADJUST: the entry, or NULL. */
static inline struct kvm_cpuid_entry2 *cpuid_leaf7(struct kvm_cpuid2 *c)
{
	return cpuid_leaf(c, 7);
}

/* Whether the vCPUs of a VM made with @flags have TSC_ADJUST in CPUID. */
static inline bool vm_has_tsc_adjust(unsigned int flags)
{
	struct kvm_cpuid2 *c = supported_cpuid();
	struct kvm_cpuid_entry2 *e = cpuid_leaf7(c);
	bool has = e && (e->ebx & (1u << 1)) && !(flags & VM_NO_TSC_ADJUST);

	free(c);
	return has;
}

static inline void create_vm(struct vm *vm, int nr_vcpus, unsigned int flags)
{
	struct kvm_userspace_memory_region region = { 0 };
	struct kvm_cpuid2 *cpuid = supported_cpuid();
	struct kvm_cpuid_entry2 *leaf7 = cpuid_leaf7(cpuid);
	int i;

	if ((flags & VM_NO_TSC_ADJUST) && leaf7)
		leaf7->ebx &= ~(1u << 1);
	/*
	 * KVM_GET_SUPPORTED_CPUID leaves CPUID.1:ECX[24] clear: the in-kernel
	 * LAPIC emulates the TSC-deadline timer (KVM_CAP_TSC_DEADLINE_TIMER).
	 */
	if ((flags & VM_TSC_DEADLINE) && cpuid_leaf(cpuid, 1))
		cpuid_leaf(cpuid, 1)->ecx |= 1u << 24;
	memset(vm, 0, sizeof(*vm));
	vm->nr_vcpus = nr_vcpus;
	vm->fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm->fd < 0)
		die("KVM_CREATE_VM: %s", strerror(errno));
	if (flags & VM_DISABLE_TSC_QUIRK) {
#ifdef KVM_X86_QUIRK_TSC_HOST_ACCESS
		struct kvm_enable_cap cap = {
			.cap = KVM_CAP_DISABLE_QUIRKS2,
			.args[0] = KVM_X86_QUIRK_TSC_HOST_ACCESS,
		};

		xioctl(vm->fd, KVM_ENABLE_CAP, &cap, "disable KVM_X86_QUIRK_TSC_HOST_ACCESS");
#else
		die("built without KVM_X86_QUIRK_TSC_HOST_ACCESS");
#endif
	}
	if (flags & VM_IRQCHIP)
		xioctl(vm->fd, KVM_CREATE_IRQCHIP, NULL, "KVM_CREATE_IRQCHIP");
	vm->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->mem == MAP_FAILED)
		die("mmap guest memory: %s", strerror(errno));
	memcpy((char *)vm->mem + CODE_GPA, guest_code, sizeof(guest_code));
	region.memory_size = MEM_SIZE;
	region.userspace_addr = (uintptr_t)vm->mem;
	xioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");
	for (i = 0; i < nr_vcpus; i++) {
		setup_vcpu(vm, i, cpuid);
		/* With the in-kernel LAPIC, KVM parks the APs until a SIPI. */
		if ((flags & VM_IRQCHIP) && i) {
			struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

			xioctl(vm->vcpu_fd[i], KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
		}
	}
	free(cpuid);
}

/* Open /dev/kvm into kvm_fd and read the kvm_run mapping's size. */
static inline void open_kvm(void)
{
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0)
		die("/dev/kvm: %s", strerror(errno));
	run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size <= 0)
		die("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
}

static inline void destroy_vm(struct vm *vm)
{
	int i;

	for (i = 0; i < vm->nr_vcpus; i++) {
		munmap(vm->run[i], run_size);
		close(vm->vcpu_fd[i]);
	}
	munmap(vm->mem, MEM_SIZE);
	close(vm->fd);
}

/* Called by bad_exit() before it exits (RIP 0 if unknown), e.g. to dump a trace. */
static void (*minivmm_bad_exit_hook)(int vcpu, uint64_t rip);

/*
 * An exit the guest's code cannot cause: print what KVM says and where the
 * vCPU is (as KTAP diagnostics), then die.
 */
static inline void __attribute__((noreturn)) bad_exit(struct vm *vm, int i)
{
	struct kvm_run *run = vm->run[i];
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = 0 };
	uint32_t n;

	printf("# vCPU %d: unexpected exit %u", i, run->exit_reason);
	if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
		printf(", suberror %u, data", run->internal.suberror);
		for (n = 0; n < run->internal.ndata && n < 16; n++)
			printf(" %#llx", (unsigned long long)run->internal.data[n]);
	} else if (run->exit_reason == KVM_EXIT_FAIL_ENTRY) {
		printf(", hardware reason %#llx",
		       (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
	}
	printf("\n");
	if (!ioctl(vm->vcpu_fd[i], KVM_GET_REGS, &regs))
		printf("# vCPU %d: rip %#llx rsp %#llx rflags %#llx\n", i, regs.rip, regs.rsp,
		       regs.rflags);
	if (!ioctl(vm->vcpu_fd[i], KVM_GET_SREGS, &sregs))
		printf("# vCPU %d: cr0 %#llx cr3 %#llx cr4 %#llx efer %#llx cs %#x base %#llx\n", i,
		       sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer, sregs.cs.selector,
		       sregs.cs.base);
	fflush(stdout);
	if (minivmm_bad_exit_hook)
		minivmm_bad_exit_hook(i, regs.rip);
	die("vCPU %d: unexpected exit %u", i, run->exit_reason);
}

/* Run vCPU @i until it has reported one TSC value. */
static inline uint64_t guest_read_tsc(struct vm *vm, int i)
{
	uint64_t lo = 0, hi = 0;
	bool have_lo = false;

	for (;;) {
		struct kvm_run *run = vm->run[i];
		uint32_t val;

		xioctl(vm->vcpu_fd[i], KVM_RUN, NULL, "KVM_RUN");
		if (run->exit_reason != KVM_EXIT_IO || run->io.size != 4)
			bad_exit(vm, i);
		memcpy(&val, (char *)run + run->io.data_offset, 4);
		if (run->io.port == PORT_TSC_LO) {
			lo = val;
			have_lo = true;
		} else if (run->io.port == PORT_TSC_HI && have_lo) {
			hi = val;
			return hi << 32 | lo;
		}
	}
}

static inline uint64_t get_offset(struct vm *vm, int i)
{
	uint64_t offset;
	struct kvm_device_attr attr = {
		.group = KVM_VCPU_TSC_CTRL,
		.attr = KVM_VCPU_TSC_OFFSET,
		.addr = (uintptr_t)&offset,
	};

	xioctl(vm->vcpu_fd[i], KVM_GET_DEVICE_ATTR, &attr, "KVM_GET_DEVICE_ATTR(TSC_OFFSET)");
	return offset;
}

static inline void set_offset(struct vm *vm, int i, uint64_t offset)
{
	struct kvm_device_attr attr = {
		.group = KVM_VCPU_TSC_CTRL,
		.attr = KVM_VCPU_TSC_OFFSET,
		.addr = (uintptr_t)&offset,
	};

	xioctl(vm->vcpu_fd[i], KVM_SET_DEVICE_ATTR, &attr, "KVM_SET_DEVICE_ATTR(TSC_OFFSET)");
}

#endif
