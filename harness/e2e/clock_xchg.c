// SPDX-License-Identifier: GPL-2.0
/*
 * clock_xchg: the clock offset between two test VMs (harness/e2e.sh 2host),
 * measured with a PTP-like timestamp exchange over UDP, and optionally
 * removed or set by stepping this host's clock.
 *
 *   clock_xchg serve [-p PORT] [-c tai]
 *	answers every probe with its receive and send times (t2, t3).
 *   clock_xchg query HOST [-p PORT] [-n PROBES] [-c tai] [-s SKEW_MS]
 *	sends PROBES probes 10 ms apart; for each, with t1 (sent) and t4
 *	(answer received) read here:
 *	    offset = ((t2 - t1) + (t3 - t4)) / 2	(the peer's clock - this one's)
 *	    rtt    = (t4 - t1) - (t3 - t2)
 *	The probe with the smallest rtt wins; the true offset is within
 *	rtt / 2 of its estimate if the path is symmetric in the worst case.
 *	Prints "clock_xchg: offset_ns=O err_ns=E rtt_ns=R probes=N clock=C".
 *	With -s, then steps this host's CLOCK_REALTIME so that this clock
 *	reads the peer's plus SKEW_MS (clock_adjtime's ADJ_SETOFFSET), and
 *	measures again.
 *
 * -c tai exchanges CLOCK_TAI instead of CLOCK_REALTIME (a step still moves
 * CLOCK_REALTIME, and CLOCK_TAI with it).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

#define NSEC_PER_SEC	((int64_t)1000000000)
#define NSEC_PER_MSEC	((int64_t)1000000)
#define MAGIC		0x54534358u	/* "TSCX" */
#define PROBE_GAP_MS	10
#define ANSWER_WAIT_MS	1000

struct msg {
	uint32_t magic;
	uint32_t seq;
	int64_t t1, t2, t3;
};

static clockid_t clk = CLOCK_REALTIME;
static const char *clk_name = "realtime";

static int64_t now_ns(clockid_t id)
{
	struct timespec ts;

	if (clock_gettime(id, &ts)) {
		perror("clock_xchg: clock_gettime");
		exit(2);
	}
	return ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

static void usage(void)
{
	fprintf(stderr, "usage: clock_xchg serve [-p PORT] [-c tai]\n"
		"       clock_xchg query HOST [-p PORT] [-n PROBES] [-c tai] [-s SKEW_MS]\n");
	exit(1);
}

static int serve(int port)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct sockaddr_in peer;
	socklen_t len;
	struct msg m;
	int fd;

	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		perror("clock_xchg: serve: socket/bind");
		return 2;
	}
	for (;;) {
		len = sizeof(peer);
		if (recvfrom(fd, &m, sizeof(m), 0, (struct sockaddr *)&peer, &len) != sizeof(m))
			continue;
		m.t2 = now_ns(clk);
		if (m.magic != MAGIC)
			continue;
		m.t3 = now_ns(clk);
		sendto(fd, &m, sizeof(m), 0, (struct sockaddr *)&peer, len);
	}
}

struct estimate {
	int64_t offset, rtt;
	int probes;		/* answered */
};

/* One round of probes; 0, or -1 when none was answered. */
static int measure(int fd, const struct sockaddr_in *to, int n, struct estimate *best)
{
	static uint32_t seq;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	struct msg m, a;
	int64_t t4, off, rtt, deadline;
	int i;

	best->probes = 0;
	for (i = 0; i < n; i++) {
		m = (struct msg){ .magic = MAGIC, .seq = ++seq };
		m.t1 = now_ns(clk);
		if (sendto(fd, &m, sizeof(m), 0, (const struct sockaddr *)to, sizeof(*to)) != sizeof(m)) {
			perror("clock_xchg: sendto");
			return -1;
		}
		deadline = now_ns(CLOCK_MONOTONIC) + ANSWER_WAIT_MS * NSEC_PER_MSEC;
		for (;;) {
			int64_t left = deadline - now_ns(CLOCK_MONOTONIC);

			if (left <= 0 || poll(&pfd, 1, (int)(left / NSEC_PER_MSEC) + 1) <= 0)
				break;
			if (recv(fd, &a, sizeof(a), 0) != sizeof(a))
				continue;
			t4 = now_ns(clk);
			if (a.magic != MAGIC || a.seq != m.seq || a.t1 != m.t1)
				continue;	/* a late answer to an earlier probe */
			off = ((a.t2 - a.t1) + (a.t3 - t4)) / 2;
			rtt = (t4 - a.t1) - (a.t3 - a.t2);
			if (!best->probes || rtt < best->rtt) {
				best->offset = off;
				best->rtt = rtt;
			}
			best->probes++;
			break;
		}
		usleep(PROBE_GAP_MS * 1000);
	}
	return best->probes ? 0 : -1;
}

static void print(const char *what, const struct estimate *e)
{
	printf("clock_xchg: %soffset_ns=%" PRId64 " err_ns=%" PRId64 " rtt_ns=%" PRId64
	       " probes=%d clock=%s\n", what, e->offset, e->rtt / 2, e->rtt, e->probes, clk_name);
	fflush(stdout);
}

static int query(const char *host, int port, int n, int step, int64_t skew_ms)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct estimate e;
	struct timex tx = {};
	int64_t t;
	int fd;

	if (inet_pton(AF_INET, host, &to.sin_addr) != 1) {
		fprintf(stderr, "clock_xchg: %s: not an IPv4 address\n", host);
		return 1;
	}
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("clock_xchg: socket");
		return 2;
	}
	if (measure(fd, &to, n, &e)) {
		fprintf(stderr, "clock_xchg: no answer from %s:%d to %d probes\n", host, port, n);
		return 3;
	}
	print("", &e);
	if (!step)
		return 0;
	/*
	 * this clock := the peer's + skew: add offset + skew to it, in the
	 * kernel (ADJ_SETOFFSET): a read-then-clock_settime() loses the time
	 * this process is preempted between the two (6 ms was seen under
	 * the emulator)
	 */
	/*
	 * In microseconds: ADJ_NANO would leave STA_NANO set, and every
	 * adjtimex reader after it (tsc_e2e.sh's now_ms) would take the
	 * nanoseconds it then reports for microseconds.
	 */
	t = (e.offset + skew_ms * NSEC_PER_MSEC) / 1000;
	tx.modes = ADJ_SETOFFSET;
	tx.time.tv_sec = t / 1000000;
	tx.time.tv_usec = t % 1000000;
	if (tx.time.tv_usec < 0) {		/* the kernel wants 0 <= us < 1 s */
		tx.time.tv_sec--;
		tx.time.tv_usec += 1000000;
	}
	if (clock_adjtime(CLOCK_REALTIME, &tx) < 0) {
		perror("clock_xchg: clock_adjtime(ADJ_SETOFFSET)");
		return 2;
	}
	printf("clock_xchg: stepped CLOCK_REALTIME by %" PRId64 " us (to the peer's %+" PRId64 " ms)\n",
	       t, skew_ms);
	if (measure(fd, &to, n, &e)) {
		fprintf(stderr, "clock_xchg: no answer from %s:%d after the step\n", host, port);
		return 3;
	}
	print("after the step: ", &e);
	return 0;
}

int main(int argc, char **argv)
{
	int port = 5002, n = 20, step = 0, opt;
	int64_t skew_ms = 0;
	const char *mode, *host = NULL;
	char *end;

	if (argc < 2)
		usage();
	mode = argv[1];
	if (!strcmp(mode, "query")) {
		if (argc < 3)
			usage();
		host = argv[2];
		optind = 3;
	} else if (!strcmp(mode, "serve")) {
		optind = 2;
	} else {
		usage();
	}
	while ((opt = getopt(argc, argv, "p:n:c:s:")) != -1) {
		switch (opt) {
		case 'p':
			port = strtol(optarg, &end, 10);
			if (*end || port <= 0 || port > 65535)
				usage();
			break;
		case 'n':
			n = strtol(optarg, &end, 10);
			if (*end || n <= 0)
				usage();
			break;
		case 'c':
			if (!strcmp(optarg, "tai")) {
				clk = CLOCK_TAI;
				clk_name = "tai";
			} else if (strcmp(optarg, "realtime")) {
				usage();
			}
			break;
		case 's':
			skew_ms = strtoll(optarg, &end, 10);
			if (*end)
				usage();
			step = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	return host ? query(host, port, n, step, skew_ms) : serve(port);
}
