/*
 * study's microbenchmark: the engine's workloads run on the running kernel.
 *
 * Compiled at run time by study.measure.build (never checked in as a binary).  Usage:
 *
 *   bench probe
 *       one JSON line: TSC frequency (rdtsc against CLOCK_MONOTONIC_RAW) and whether
 *       userfaultfd write-protect works here (UFFD_FEATURE_PAGEFAULT_FLAG_WP, UFFDIO_WRITEPROTECT).
 *   bench run workload=W pages=P cpus=C0,C1,.. others=busy|idle dirty=D rounds=R warmup=W
 *             trials=T max_samples=M seed=S [write_rate=X writes_per_round=N] [gap=G]
 *       one JSON line per trial: per-label call count, cycle sum and up to M samples
 *       (cycles per call, rdtsc), and the TLB / CAL rows of /proc/interrupts per CPU
 *       (deltas over the trial), and the cycles the other threads spent off their CPUs
 *       (gaps longer than G cycles in their loops' TSC reads; see watch()).
 *
 * Thread 0 (the initiator / uffd monitor) runs on C0; one more thread of the same mm per
 * further CPU.  "busy" threads spin in the mm (their CPU stays in mm_cpumask and is not
 * lazy, so flush_tlb_mm_range() must IPI it); "idle" threads sleep, their CPU goes idle
 * in lazy TLB mode, and the shootdown skips it (should_flush_tlb() / is_lazy).
 *
 * Workloads (the modules of study/workloads model each one):
 *   mprotect_toggle  mprotect(PROT_READ); mprotect(PROT_READ|PROT_WRITE); then each page is
 *                    written with probability dirty.  dirty=0: the range is MADV_FREE'd once
 *                    after being populated and never written again (clean PTEs).
 *   madv_free        madvise(MADV_FREE); rewrite each page with probability dirty;
 *                    mprotect(PROT_READ); mprotect(PROT_READ|PROT_WRITE).
 *   uffd_wp          the monitor write-protects the range (UFFDIO_WRITEPROTECT); each writer
 *                    writes a random page with probability write_rate, writes_per_round times;
 *                    a write to a protected page takes a uffd-wp fault that the monitor
 *                    resolves (UFFDIO_WRITEPROTECT without _MODE_WP, which wakes the writer).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_CPUS 1024
#define PAGE 4096UL

/* ---- timing: lfence orders rdtsc after earlier instructions; rdtscp waits for them ---- */
static inline uint64_t t_start(void)
{
	uint32_t lo, hi;
	__asm__ volatile("lfence\n\trdtsc\n\tlfence" : "=a"(lo), "=d"(hi)::"memory");
	return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t t_stop(void)
{
	uint32_t lo, hi, aux;
	__asm__ volatile("rdtscp\n\tlfence" : "=a"(lo), "=d"(hi), "=c"(aux)::"memory");
	return ((uint64_t)hi << 32) | lo;
}

static void die(const char *what)
{
	fprintf(stderr, "bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* ---- a tiny deterministic PRNG (xorshift64*) per thread ---- */
static inline uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}
static inline double urand(uint64_t *s) { return (rnd(s) >> 11) * (1.0 / 9007199254740992.0); }

/* ---- /proc/interrupts: the "TLB" (shootdowns received) and "CAL" (function-call IPIs) rows ---- */
static int ncpu_irq;

static void read_irq_rows(long *tlb, long *cal)
{
	static char buf[1 << 20];
	int fd = open("/proc/interrupts", O_RDONLY);
	if (fd < 0) die("open /proc/interrupts");
	ssize_t n, len = 0;
	while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) len += n;
	close(fd);
	buf[len] = 0;
	char *line = buf;
	if (!ncpu_irq) {   /* the header names one column per online CPU */
		for (char *p = buf; *p && *p != '\n'; p++)
			if (!strncmp(p, "CPU", 3) && (p == buf || p[-1] == ' ')) ncpu_irq++;
	}
	while (line && *line) {
		char *next = strchr(line, '\n');
		if (next) *next++ = 0;
		char *p = line;
		while (*p == ' ') p++;
		long *dst = !strncmp(p, "TLB:", 4) ? tlb : !strncmp(p, "CAL:", 4) ? cal : NULL;
		if (dst) {
			p += 4;
			for (int c = 0; c < ncpu_irq && c < MAX_CPUS; c++) dst[c] = strtol(p, &p, 10);
		}
		line = next;
	}
}

/* ---- per-label books of one trial ---- */
enum { L_RO, L_RW, L_WRITE, L_MADV, L_UFFD_PROT, L_UFFD_RESOLVE, L_UFFD_WRITE, L_UNPROT, N_LABELS };
static const char *label_names[N_LABELS] = {"mprotect_ro", "mprotect_rw", "write", "madv_free",
					    "uffd_protect", "uffd_resolve", "uffd_write", "uffd_unprotect"};
struct book { long n; double sum; long kept; long out; uint64_t *s; };
static struct book books[N_LABELS];
static long max_samples = 2048;
/* calls longer than this were interrupted by the scheduler (another task ran on the CPU in
 * the middle of the call): counted apart, kept among the samples, left out of the mean */
static uint64_t outlier_cycles = ~0ULL;
static int recording;

/* ---- how long the other threads were off their CPUs ----
 * A busy thread reads the TSC on every iteration of its loop.  Two reads further apart than
 * gap_cycles mean it did not run in between: the guest scheduler ran another task on its
 * CPU (then that CPU has another mm loaded and should_flush_tlb() sends it no shootdown), or
 * the host preempted the vCPU (kvm_flush_tlb_multi() flags it instead).  An interrupt,
 * the shootdown IPI included, takes far less than gap_cycles and is not counted. */
static uint64_t gap_cycles = ~0ULL;
static atomic_ulong off_cycles;        /* summed over the other threads */
static atomic_int watchers;            /* other threads that track their gaps */
static atomic_int spinners;            /* of those, the busy loops counting spin_work */
/* Each watching thread's last TSC read (its heartbeat).  After each flushing call thread 0
 * looks at them (sample_others(), just before its timed flushing calls, outside the timed region): a heartbeat older than gap_cycles means that thread is off its CPU now.
 * The share of such samples that found it on its CPU is the on-CPU share AT THE FLUSHES,
 * which is what should_flush_tlb() sees (a time average can differ: the scheduler may
 * take the other CPU more often while thread 0 runs). */
static _Atomic uint64_t heartbeat[MAX_CPUS];
static long on_samples, on_hits;

static inline void watch(uint64_t *last, int index)
{
	uint64_t now = __builtin_ia32_rdtsc();
	atomic_store_explicit(&heartbeat[index], now, memory_order_relaxed);
	if (now - *last > gap_cycles)
		atomic_fetch_add_explicit(&off_cycles, now - *last, memory_order_relaxed);
	*last = now;
}

/* The other threads' gaps still open now (they add them when they run again): a trial's off
 * time is what they added during it, minus the part of a gap open at its start, plus the
 * part open at its end. */
static unsigned long open_gaps(uint64_t now)
{
	unsigned long sum = 0;
	int n = atomic_load(&watchers);
	for (int i = 1; i <= n && i < MAX_CPUS; i++) {
		int64_t age = (int64_t)(now - atomic_load_explicit(&heartbeat[i], memory_order_relaxed));
		if (age > (int64_t)gap_cycles) sum += (unsigned long)age;
	}
	return sum;
}

static void sample_others(void)
{
	int n = atomic_load_explicit(&watchers, memory_order_relaxed);
	if (!n || !recording) return;
	uint64_t now = __builtin_ia32_rdtsc();
	for (int i = 1; i <= n && i < MAX_CPUS; i++) {
		on_samples++;
		/* signed: the two CPUs' TSCs may differ by a few cycles, a fresh heartbeat can look
		 * slightly in the future */
		int64_t age = (int64_t)(now - atomic_load_explicit(&heartbeat[i], memory_order_relaxed));
		if (age <= (int64_t)gap_cycles) on_hits++;
	}
}

static void book(int label, uint64_t cycles)
{
	if (!recording) return;
	struct book *b = &books[label];
	if (b->kept < max_samples) b->s[b->kept++] = cycles;
	if (cycles > outlier_cycles) {
		b->out++;
		return;
	}
	b->n++;
	b->sum += (double)cycles;
}

/* ---- configuration ---- */
static const char *workload = "mprotect_toggle";
static long pages = 1, rounds = 1000, warmup = 100, trials = 5, writes_per_round = 4;
static double dirty = 1.0, write_rate = 0.5;
static int cpus[MAX_CPUS], ncpus;
static int busy = 1;
static uint64_t seed = 1;
static char *range;

static atomic_int stop_threads;
static atomic_int started;
static volatile unsigned long spin_work;


static int niceness;   /* applied to every thread of the benchmark (nice=N) */

static void pin(int cpu)
{
	/* A nice -20 thread keeps its CPU against the other processes of a shared machine:
	 * a descheduled thread's CPU switches to another mm and no longer gets the IPI. */
	if (niceness && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), niceness))
		niceness = 0;   /* not permitted: run at the default priority */
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) die("sched_setaffinity");
}

/* ---- uffd state ---- */
static int uffd = -1;
static atomic_long round_go;           /* round number the writers may start */
static atomic_int writers_done;
static atomic_uchar *unprotected;      /* per page: resolved in this round (1 writer: exact) */

static const char *uffd_setup(char *base, size_t len)
{
	static char why[256];
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0) {
		snprintf(why, sizeof why, "userfaultfd(2) failed: %s", strerror(errno));
		return why;
	}
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP};
	if (ioctl(uffd, UFFDIO_API, &api)) {
		snprintf(why, sizeof why, "UFFDIO_API with UFFD_FEATURE_PAGEFAULT_FLAG_WP failed: %s", strerror(errno));
		return why;
	}
	struct uffdio_register reg = {.range = {(unsigned long)base, len}, .mode = UFFDIO_REGISTER_MODE_WP};
	if (ioctl(uffd, UFFDIO_REGISTER, &reg)) {
		snprintf(why, sizeof why, "UFFDIO_REGISTER_MODE_WP failed: %s", strerror(errno));
		return why;
	}
	if (!(reg.ioctls & (1ULL << _UFFDIO_WRITEPROTECT))) {
		snprintf(why, sizeof why, "UFFDIO_WRITEPROTECT not offered on anonymous memory");
		return why;
	}
	struct uffdio_writeprotect wp = {.range = {(unsigned long)base, len}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp)) {
		snprintf(why, sizeof why, "UFFDIO_WRITEPROTECT failed: %s", strerror(errno));
		return why;
	}
	wp.mode = 0;
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp)) {
		snprintf(why, sizeof why, "UFFDIO_WRITEPROTECT (unprotect) failed: %s", strerror(errno));
		return why;
	}
	return NULL;
}

/* The monitor resolves every pending uffd-wp fault; returns how many it resolved. */
static int uffd_resolve_pending(void)
{
	struct uffd_msg msg;
	int done = 0;
	while (read(uffd, &msg, sizeof msg) == sizeof msg) {
		if (msg.event != UFFD_EVENT_PAGEFAULT || !(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP))
			continue;
		unsigned long addr = msg.arg.pagefault.address & ~(PAGE - 1);
		/* no sample_others() here: the writer sleeps in handle_userfault() until this
		 * unprotect wakes it (its CPU lazy or running another task), which the model's
		 * uffd_wp workload represents explicitly */
		struct uffdio_writeprotect wp = {.range = {addr, PAGE}, .mode = 0};
		uint64_t t0 = t_start();
		if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp)) die("UFFDIO_WRITEPROTECT unprotect");
		book(L_UNPROT, t_stop() - t0);
		atomic_store(&unprotected[(addr - (unsigned long)range) / PAGE], 1);
		done++;
	}
	return done;
}

/* ---- the other threads of the mm ---- */
struct other { int cpu; int index; pthread_t tid; };
static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cond = PTHREAD_COND_INITIALIZER;

static void *other_main(void *arg)
{
	struct other *o = arg;
	pin(o->cpu);
	volatile char sink = range[0];   /* run in the mm once: this CPU joins mm_cpumask */
	(void)sink;
	atomic_fetch_add(&started, 1);
	if (!strcmp(workload, "uffd_wp")) {
		uint64_t s = seed * 7919 + o->index;
		long seen = 0;
		uint64_t last = __builtin_ia32_rdtsc();
		atomic_fetch_add(&watchers, 1);
		for (;;) {
			long r;
			while ((r = atomic_load(&round_go)) == seen && !atomic_load(&stop_threads)) {
				__builtin_ia32_pause();
				watch(&last, o->index);
			}
			if (atomic_load(&stop_threads)) break;
			seen = r;
			for (long k = 0; k < writes_per_round; k++) {
				if (urand(&s) >= write_rate) continue;
				long page = (long)(rnd(&s) % (uint64_t)pages);
				int faults = !atomic_load(&unprotected[page]);
				uint64_t t0 = t_start();
				range[page * PAGE + 8 * o->index] = (char)k;
				uint64_t dt = t_stop() - t0;
				if (o->index == 1) book(faults ? L_UFFD_RESOLVE : L_UFFD_WRITE, dt);
			}
			atomic_fetch_add(&writers_done, 1);
		}
		return NULL;
	}
	if (busy) {
		/* no PAUSE: it would trigger pause-loop exits in a guest and get this vCPU
		 * descheduled (then kvm_flush_tlb_multi() flags it instead of sending an IPI) */
		uint64_t last = __builtin_ia32_rdtsc();
		atomic_fetch_add(&watchers, 1);
		atomic_fetch_add(&spinners, 1);
		while (!atomic_load_explicit(&stop_threads, memory_order_relaxed)) {
			spin_work++;
			watch(&last, o->index);
		}
	} else {
		pthread_mutex_lock(&idle_lock);
		while (!atomic_load(&stop_threads)) pthread_cond_wait(&idle_cond, &idle_lock);
		pthread_mutex_unlock(&idle_lock);
	}
	return NULL;
}

/* ---- one round of each workload (thread 0) ---- */
static uint64_t s0;

static void write_pages(double p)
{
	for (long i = 0; i < pages; i++) {
		if (p < 1.0 && urand(&s0) >= p) continue;
		uint64_t t0 = t_start();
		range[i * PAGE] = (char)i;
		book(L_WRITE, t_stop() - t0);
	}
}

static void timed_mprotect(int prot, int label)
{
	sample_others();
	uint64_t t0 = t_start();
	if (mprotect(range, pages * PAGE, prot)) die("mprotect");
	book(label, t_stop() - t0);
}

static void round_mprotect_toggle(void)
{
	timed_mprotect(PROT_READ, L_RO);
	timed_mprotect(PROT_READ | PROT_WRITE, L_RW);
	if (dirty > 0.0) write_pages(dirty);
}

static void round_madv_free(void)
{
	sample_others();
	uint64_t t0 = t_start();
	if (madvise(range, pages * PAGE, MADV_FREE)) die("madvise(MADV_FREE)");
	book(L_MADV, t_stop() - t0);
	write_pages(dirty);
	timed_mprotect(PROT_READ, L_RO);
	timed_mprotect(PROT_READ | PROT_WRITE, L_RW);
}

static long uffd_round_no;

static void round_uffd_wp(int nwriters)
{
	struct uffdio_writeprotect wp = {.range = {(unsigned long)range, pages * PAGE},
					 .mode = UFFDIO_WRITEPROTECT_MODE_WP};
	for (long i = 0; i < pages; i++) atomic_store(&unprotected[i], 0);
	sample_others();
	uint64_t t0 = t_start();
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp)) die("UFFDIO_WRITEPROTECT");
	book(L_UFFD_PROT, t_stop() - t0);
	atomic_store(&writers_done, 0);
	atomic_store(&round_go, ++uffd_round_no);
	while (atomic_load(&writers_done) < nwriters) {
		struct pollfd pfd = {.fd = uffd, .events = POLLIN};
		if (poll(&pfd, 1, 0) > 0) uffd_resolve_pending();
		else __builtin_ia32_pause();
	}
	uffd_resolve_pending();
	/* pages nobody wrote stay protected into the next round, as in the model's monitor:
	 * re-protecting them changes no PTE and needs no flush */
}

static void print_trial(long trial, const long *tlb0, const long *cal0, const long *tlb1, const long *cal1,
			uint64_t cycles, unsigned long spins, unsigned long off)
{
	/* spins: iterations of the busy threads' loop during the trial (0: they never ran);
	 * off: their cycles off the CPU (gaps longer than gap_cycles), summed over watchers */
	printf("{\"trial\":%ld,\"rounds\":%ld,\"cycles\":%lu,\"spins\":%lu,\"off_cycles\":%lu,\"watchers\":%d,"
	       "\"spinners\":%d,\"on_samples\":%ld,\"on_hits\":%ld,\"labels\":{", trial, rounds, (unsigned long)cycles,
	       spins, off, atomic_load(&watchers), atomic_load(&spinners), on_samples, on_hits);
	int first = 1;
	for (int l = 0; l < N_LABELS; l++) {
		struct book *b = &books[l];
		if (!b->n && !b->out) continue;
		printf("%s\"%s\":{\"n\":%ld,\"sum\":%.0f,\"out\":%ld,\"samples\":[", first ? "" : ",", label_names[l],
		       b->n, b->sum, b->out);
		for (long i = 0; i < b->kept; i++) printf(i ? ",%lu" : "%lu", (unsigned long)b->s[i]);
		printf("]}");
		first = 0;
	}
	printf("},\"tlb\":[");
	for (int c = 0; c < ncpu_irq; c++) printf(c ? ",%ld" : "%ld", tlb1[c] - tlb0[c]);
	printf("],\"cal\":[");
	for (int c = 0; c < ncpu_irq; c++) printf(c ? ",%ld" : "%ld", cal1[c] - cal0[c]);
	printf("]}\n");
	fflush(stdout);
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t p = *(const uint64_t *)x, q = *(const uint64_t *)y;
	return (p > q) - (p < q);
}

static void probe(void)
{
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC_RAW, &a);
	uint64_t t0 = t_start();
	do clock_gettime(CLOCK_MONOTONIC_RAW, &b);
	while ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec) < 2e8);
	uint64_t t1 = t_stop();
	double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	char *mem = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) die("mmap");
	mem[0] = 1;
	const char *why = uffd_setup(mem, PAGE);
	/* the cost of an empty timed region: what every sample carries on top of its call */
	enum { N = 4001 };
	static uint64_t empty[N];
	for (int i = 0; i < N; i++) {
		uint64_t a0 = t_start();
		empty[i] = t_stop() - a0;
	}
	qsort(empty, N, sizeof empty[0], cmp_u64);
	/* the busy loop alone (same body as other_main's): iterations per cycle in short windows,
	 * the fastest window is the rate of a loop that kept its CPU throughout */
	double spin_rate = 0.0;
	uint64_t last = __builtin_ia32_rdtsc();
	for (int w = 0; w < 200; w++) {
		unsigned long n0 = spin_work;
		uint64_t a0 = t_start();
		for (int i = 0; i < 20000; i++) {
			spin_work++;
			watch(&last, 0);
		}
		double rate = (double)(spin_work - n0) / (double)(t_stop() - a0);
		if (rate > spin_rate) spin_rate = rate;
	}
	printf("{\"tsc_hz\":%.0f,\"timer_overhead\":%lu,\"spin_rate\":%.6f,\"uffd_wp\":%s,\"uffd_reason\":\"%s\"}\n",
	       (t1 - t0) / ns * 1e9, (unsigned long)empty[N / 2], spin_rate, why ? "false" : "true", why ? why : "");
}

static void parse_cpus(const char *s)
{
	while (*s && ncpus < MAX_CPUS) {
		cpus[ncpus++] = (int)strtol(s, (char **)&s, 10);
		if (*s == ',') s++;
		else break;
	}
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "probe")) {
		probe();
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "run")) {
		fprintf(stderr, "usage: bench probe | bench run key=value ...\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq) { fprintf(stderr, "bench: expected key=value, got %s\n", argv[i]); return 2; }
		*eq = 0;
		const char *k = argv[i], *v = eq + 1;
		if (!strcmp(k, "workload")) workload = v;
		else if (!strcmp(k, "pages")) pages = atol(v);
		else if (!strcmp(k, "cpus")) parse_cpus(v);
		else if (!strcmp(k, "others")) busy = !strcmp(v, "busy");
		else if (!strcmp(k, "dirty")) dirty = atof(v);
		else if (!strcmp(k, "rounds")) rounds = atol(v);
		else if (!strcmp(k, "warmup")) warmup = atol(v);
		else if (!strcmp(k, "trials")) trials = atol(v);
		else if (!strcmp(k, "max_samples")) max_samples = atol(v);
		else if (!strcmp(k, "nice")) niceness = atoi(v);
		else if (!strcmp(k, "outlier")) outlier_cycles = strtoull(v, NULL, 10);
		else if (!strcmp(k, "gap")) gap_cycles = strtoull(v, NULL, 10);
		else if (!strcmp(k, "seed")) seed = strtoull(v, NULL, 10);
		else if (!strcmp(k, "write_rate")) write_rate = atof(v);
		else if (!strcmp(k, "writes_per_round")) writes_per_round = atol(v);
		else { fprintf(stderr, "bench: unknown key %s\n", k); return 2; }
	}
	if (ncpus < 1 || pages < 1 || rounds < 1 || trials < 1) {
		fprintf(stderr, "bench: need cpus, pages, rounds, trials >= 1\n");
		return 2;
	}
	s0 = seed * 2654435761ULL + 1;
	for (int l = 0; l < N_LABELS; l++) books[l].s = calloc(max_samples > 0 ? max_samples : 1, sizeof(uint64_t));
	pin(cpus[0]);
	size_t len = pages * PAGE;
	range = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (range == MAP_FAILED) die("mmap");
	/* no transparent huge page: the model's range is 4 KiB PTEs */
	madvise(range, len, MADV_NOHUGEPAGE);
	for (long i = 0; i < pages; i++) range[i * PAGE] = 1;
	int is_uffd = !strcmp(workload, "uffd_wp");
	if (is_uffd) {
		const char *why = uffd_setup(range, len);
		if (why) {
			printf("{\"skip\":\"%s\"}\n", why);
			return 0;
		}
		unprotected = calloc(pages, 1);
		if (ncpus < 2) { fprintf(stderr, "bench: uffd_wp needs a monitor and a writer (2 cpus)\n"); return 2; }
	} else if (strcmp(workload, "mprotect_toggle") && strcmp(workload, "madv_free")) {
		fprintf(stderr, "bench: unknown workload %s\n", workload);
		return 2;
	}
	if (!strcmp(workload, "mprotect_toggle") && dirty == 0.0 && madvise(range, len, MADV_FREE))
		die("madvise(MADV_FREE)");
	struct other others[MAX_CPUS];
	for (int i = 1; i < ncpus; i++) {
		others[i] = (struct other){.cpu = cpus[i], .index = i};
		if (pthread_create(&others[i].tid, NULL, other_main, &others[i])) die("pthread_create");
	}
	while (atomic_load(&started) < ncpus - 1) __builtin_ia32_pause();
	if (!busy) usleep(20000);   /* let the sleepers' CPUs go idle (lazy) */

	long tlb0[MAX_CPUS] = {0}, cal0[MAX_CPUS] = {0}, tlb1[MAX_CPUS] = {0}, cal1[MAX_CPUS] = {0};
	for (long t = -1; t < trials; t++) {
		long n = t < 0 ? warmup : rounds;
		recording = t >= 0;
		for (int l = 0; l < N_LABELS; l++) books[l].n = books[l].kept = books[l].out = 0, books[l].sum = 0;
		on_samples = on_hits = 0;
		read_irq_rows(tlb0, cal0);
		unsigned long spin0 = spin_work, off0 = atomic_load(&off_cycles);
		uint64_t c0 = t_start();
		off0 += open_gaps(c0);
		for (long r = 0; r < n; r++) {
			if (is_uffd) round_uffd_wp(ncpus - 1);
			else if (workload[0] == 'm' && workload[1] == 'p') round_mprotect_toggle();
			else round_madv_free();
		}
		uint64_t c1 = t_stop();
		unsigned long spin1 = spin_work, off1 = atomic_load(&off_cycles) + open_gaps(c1);
		read_irq_rows(tlb1, cal1);
		if (t >= 0) print_trial(t, tlb0, cal0, tlb1, cal1, c1 - c0, spin1 - spin0, off1 - off0);
	}
	atomic_store(&stop_threads, 1);
	pthread_mutex_lock(&idle_lock);
	pthread_cond_broadcast(&idle_cond);
	pthread_mutex_unlock(&idle_lock);
	for (int i = 1; i < ncpus; i++) pthread_join(others[i].tid, NULL);
	return 0;
}
