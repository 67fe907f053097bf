// SPDX-License-Identifier: GPL-2.0
/*
 * Issue 19's hang, made deterministic: an exception whose delivery touches
 * a guest-physical address KVM already caches as MMIO.
 *
 * The real-mode guest loads one byte from 0x20100, outside its only
 * memslot (64 KiB at 0): KVM installs an MMIO SPTE for that page and
 * exits with KVM_EXIT_MMIO.  It then points its stack into the same page
 * (SS:SP = 0x2000:0x200) and executes UD2.  Delivering the #UD pushes
 * FLAGS, CS and IP to 0x201fe..: a nested page fault on a cached MMIO
 * SPTE (the reserved bit set) during event delivery.  KVM cannot emulate
 * that and should say so, with KVM_EXIT_INTERNAL_ERROR and
 * KVM_INTERNAL_ERROR_DELIVERY_EV, as x86_emulate_instruction() does.  On
 * SVM, 7.3's npf_interception() expedites reserved-bit faults and, when
 * svm_check_emulate_instruction() refuses the vectoring, resumes the
 * guest instead: the hardware redelivers the #UD and faults again, and
 * KVM_RUN only returns on a signal.  This reports which of the two KVM
 * does, after a 3 s alarm at most.  It needs no uAPI of the series.
 */
#define _GNU_SOURCE
#include <signal.h>

#define MINIVMM_NAME "mmio_vectoring"
#include "minivmm.h"

#define LOAD_GPA	0x20100
#define PORT_LOADED	0x40
#define VECTORING_CODE_GPA	0x3000
#define STUCK_S		3

/* mov bx, 0x2000; mov ds, bx; mov al, [0x100]; out 0x40, al; mov ss, bx; mov sp, 0x200; ud2 */
static const uint8_t vectoring_code[] = {
	0xbb, 0x00, 0x20,
	0x8e, 0xdb,
	0xa0, 0x00, 0x01,
	0xe6, PORT_LOADED,
	0x8e, 0xd3,
	0xbc, 0x00, 0x02,
	0x0f, 0x0b,
};

static void alarm_handler(int sig)
{
	(void)sig;
}

/* KVM_RUN once; false if it was interrupted by the alarm. */
static bool run(struct vm *vm)
{
	if (!ioctl(vm->vcpu_fd[0], KVM_RUN, NULL))
		return true;
	if (errno != EINTR)
		die("KVM_RUN: %s", strerror(errno));
	return false;
}

int main(void)
{
	struct kvm_regs regs = { .rip = VECTORING_CODE_GPA, .rflags = 2 };
	struct sigaction sa = { .sa_handler = alarm_handler };
	struct kvm_run *r;
	struct vm vm;
	uint64_t start;

	(void)tsc_khz;	/* minivmm's, unused here */
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n1..1\n");
	open_kvm();
	/* No SA_RESTART: the alarm must end a KVM_RUN that does not return. */
	sigaction(SIGALRM, &sa, NULL);

	create_vm(&vm, 1, 0);
	r = vm.run[0];
	memcpy((char *)vm.mem + VECTORING_CODE_GPA, vectoring_code, sizeof(vectoring_code));
	xioctl(vm.vcpu_fd[0], KVM_SET_REGS, &regs, "KVM_SET_REGS");

	/* The load outside the memslot: KVM caches the page as MMIO. */
	if (!run(&vm) || r->exit_reason != KVM_EXIT_MMIO || r->mmio.phys_addr != LOAD_GPA ||
	    r->mmio.is_write)
		die("expected a KVM_EXIT_MMIO read of %#x, got exit %u", LOAD_GPA, r->exit_reason);
	r->mmio.data[0] = 0x5a;
	if (!run(&vm) || r->exit_reason != KVM_EXIT_IO || r->io.port != PORT_LOADED)
		die("expected the guest's OUT to port %#x, got exit %u", PORT_LOADED, r->exit_reason);

	/* The #UD whose delivery pushes onto that page. */
	start = now_ns(CLOCK_MONOTONIC);
	alarm(STUCK_S);
	if (!run(&vm)) {
		xioctl(vm.vcpu_fd[0], KVM_GET_REGS, &regs, "KVM_GET_REGS");
		printf("# KVM_RUN did not return in %d s (interrupted by the alarm); guest RIP %#llx, RSP %#llx:\n",
		       STUCK_S, regs.rip, regs.rsp);
		printf("# KVM resumes the guest on each nested page fault of the #UD's delivery (a livelock)\n");
		printf("not ok 1 mmio_vectoring\n");
		return 1;
	}
	alarm(0);
	if (r->exit_reason == KVM_EXIT_INTERNAL_ERROR &&
	    r->internal.suberror == KVM_INTERNAL_ERROR_DELIVERY_EV) {
		printf("# KVM_EXIT_INTERNAL_ERROR, KVM_INTERNAL_ERROR_DELIVERY_EV after %.3f s\n",
		       (now_ns(CLOCK_MONOTONIC) - start) / 1e9);
		printf("ok 1 mmio_vectoring\n");
		return 0;
	}
	printf("# exit %u (suberror %u) after %.3f s: KVM returned, but not with the vectoring error\n",
	       r->exit_reason, r->exit_reason == KVM_EXIT_INTERNAL_ERROR ? r->internal.suberror : 0,
	       (now_ns(CLOCK_MONOTONIC) - start) / 1e9);
	printf("not ok 1 mmio_vectoring\n");
	return 1;
}
