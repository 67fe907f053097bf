// SPDX-License-Identifier: GPL-2.0
/*
 * Print the TSC frequency KVM uses for a new vCPU (KVM_GET_TSC_KHZ), so the
 * harness can compare it with the clocksource's calibration.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

int main(void)
{
	int kvm, vm, vcpu, khz;

	kvm = open("/dev/kvm", O_RDWR);
	if (kvm < 0) {
		perror("open /dev/kvm");
		return 1;
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		perror("KVM_CREATE_VM");
		return 1;
	}
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) {
		perror("KVM_CREATE_VCPU");
		return 1;
	}
	khz = ioctl(vcpu, KVM_GET_TSC_KHZ, 0);
	if (khz < 0) {
		perror("KVM_GET_TSC_KHZ");
		return 1;
	}
	printf("kvm tsc_khz: %d\n", khz);
	return 0;
}
