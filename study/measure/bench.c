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
 *             [ws=N] [vma=V] [trace=DIR]
 *       one JSON line per trial: per-label call count, cycle sum and up to M samples
 *       (cycles per call, rdtsc), and the TLB / CAL rows of /proc/interrupts per CPU
 *       (deltas over the trial), and the cycles the other threads spent off their CPUs
 *       (gaps longer than G cycles in their loops' TSC reads; see watch()).
 *
 * trace=DIR: a tracefs instance (study.measure.trace sets it up: events, buffer, CPUs).
 * Before it starts a thread the benchmark writes its pid into DIR/set_event_pid (with
 * options/event-fork on, its threads join the list as they are created); around the timed
 * rounds of each recorded trial (never setup or warm-up) it turns DIR/tracing_on on and
 * writes "study: trial T begin" / "study: trial T end" into DIR/trace_marker; after each
 * trial's JSON line it waits for a line on stdin (the caller reads and clears the trace).
 *
 * Thread 0 (the initiator / uffd monitor) runs on C0; one more thread of the same mm per
 * further CPU.  "busy" threads spin in the mm (their CPU stays in mm_cpumask and is not
 * lazy, so flush_tlb_mm_range() must IPI it); "idle" threads sleep, their CPU goes idle
 * in lazy TLB mode, and the shootdown skips it (should_flush_tlb() / is_lazy).
 *
 * Workloads (the first three are the engine's, study/workloads models each; the others are host
 * cells that study/measure/grid.py maps onto the engine's mprotect_toggle):
 *   mprotect_toggle  mprotect(PROT_READ); mprotect(PROT_READ|PROT_WRITE); then each page is
 *                    written with probability dirty.  dirty=0: the range is MADV_FREE'd once
 *                    after being populated and never written again (clean PTEs).
 *   madv_free        madvise(MADV_FREE); rewrite each page with probability dirty;
 *                    mprotect(PROT_READ); mprotect(PROT_READ|PROT_WRITE).
 *   uffd_wp          the monitor write-protects the range (UFFDIO_WRITEPROTECT); each writer
 *                    writes a random page with probability write_rate, writes_per_round times;
 *                    a write to a protected page takes a uffd-wp fault that the monitor
 *                    resolves (UFFDIO_WRITEPROTECT without _MODE_WP, which wakes the writer).
 *   mprotect_vma     mprotect_toggle's round on a range of P pages in the middle of a VMA of
 *                    V pages (vma=V) fenced by PROT_NONE pages: V > P splits the VMA in three
 *                    at mprotect(PROT_READ) and merges it back at mprotect(PROT_READ|PROT_WRITE);
 *                    V = P toggles the whole VMA (nothing splits, the fences stop a merge).
 *   refill           thread 1 (busy) owns a buffer of N pages (ws=N) and makes one pass over
 *                    it (a read per page) each time thread 0 hands it a token; a round is
 *                    mprotect(PROT_READ), pass, mprotect(PROT_READ|PROT_WRITE), writes, pass
 *                    (the passes booked as ws_pass: right after a flushing call) then two
 *                    quiet passes with no call before them (ws_pass_quiet).  The flush of a
 *                    call is done (its IPI acknowledged) before the pass starts, so a pass
 *                    after a call minus a quiet pass is the refill the flush caused.
 *   lazy_wake        thread 1 sleeps (futex) with the mm loaded, its CPU idle in lazy TLB mode;
 *                    a round is: thread 0 waits until thread 1 sleeps, calls mprotect(PROT_READ)
 *                    and mprotect(PROT_READ|PROT_WRITE) (the generation moves, the lazy CPU gets
 *                    no IPI), writes, wakes thread 1 (wake: futex wake to thread 1 running,
 *                    its switch_mm_irqs_off() flushing fully), which makes one pass over its
 *                    N pages (ws_pass); then the same wake with no call before it
 *                    (wake_quiet, ws_pass_quiet).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
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
enum { L_RO, L_RW, L_WRITE, L_MADV, L_UFFD_PROT, L_UFFD_RESOLVE, L_UFFD_WRITE, L_UNPROT,
       L_PASS, L_PASS_QUIET, L_WAKE, L_WAKE_QUIET, N_LABELS };
static const char *label_names[N_LABELS] = {"mprotect_ro", "mprotect_rw", "write", "madv_free",
					    "uffd_protect", "uffd_resolve", "uffd_write", "uffd_unprotect",
					    "ws_pass", "ws_pass_quiet", "wake", "wake_quiet"};
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
enum { W_TOGGLE, W_MADV, W_UFFD, W_VMA, W_REFILL, W_LAZY, N_MODES };
static const char *mode_names[N_MODES] = {"mprotect_toggle", "madv_free", "uffd_wp", "mprotect_vma", "refill",
					  "lazy_wake"};
static int mode = W_TOGGLE;
static long ws_pages = 0;      /* refill, lazy_wake: pages of thread 1's own buffer */
static long vma_pages = 0;     /* mprotect_vma: pages of the VMA around the range */
static char *ws;               /* thread 1's buffer */
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

/* ---- tracefs (trace=DIR): the kernel's own account of the timed rounds ---- */
static const char *trace_dir;
static int trace_on_fd = -1, trace_marker_fd = -1;

static int trace_open(const char *name, int flags)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", trace_dir, name);
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0) die(path);
	return fd;
}

static void trace_write(int fd, const char *text)
{
	size_t n = strlen(text);
	if (write(fd, text, n) != (ssize_t)n) die("write to tracefs");
}

/* Before any thread exists: this process's pid is the instance's pid filter (event-fork
 * adds each thread as it is created). */
static void trace_setup(void)
{
	char pid[32];
	snprintf(pid, sizeof pid, "%d\n", (int)getpid());
	int fd = trace_open("set_event_pid", O_WRONLY | O_TRUNC);
	trace_write(fd, pid);
	close(fd);
	trace_on_fd = trace_open("tracing_on", O_WRONLY);
	trace_marker_fd = trace_open("trace_marker", O_WRONLY);
}

static void trace_mark(long trial, const char *what)
{
	char text[64];
	snprintf(text, sizeof text, "study: trial %ld %s\n", trial, what);
	trace_write(trace_marker_fd, text);
}

static void trace_begin(long trial)
{
	if (!trace_dir) return;
	trace_write(trace_on_fd, "1");
	trace_mark(trial, "begin");
}

static void trace_end(long trial)
{
	if (!trace_dir) return;
	trace_mark(trial, "end");
	trace_write(trace_on_fd, "0");
}

/* The caller reads and clears the trial's trace, then sends a line. */
static void trace_sync(void)
{
	char line[64];
	if (!trace_dir) return;
	if (!fgets(line, sizeof line, stdin)) {
		fprintf(stderr, "bench: stdin closed while waiting for the trace to be read\n");
		exit(1);
	}
}

/* ---- refill and lazy_wake: thread 1's passes over its own buffer ---- */
static atomic_long tok_go, tok_done;   /* thread 0 hands thread 1 a token; thread 1 hands it back */
static atomic_int tok_quiet;           /* no flushing call came before this token's pass */
static atomic_int asleep;              /* lazy_wake: thread 1 is about to block (or blocked) */
static atomic_int wake_word;           /* lazy_wake: the futex word, one more per wake */
static _Atomic uint64_t wake_sent;     /* lazy_wake: thread 0's TSC when it woke thread 1 */
static volatile unsigned long ws_sink;
#define SETTLE_NS 50000                /* lazy_wake: time for the sleeper's CPU to go idle */

/* One read per page; the offsets walk the cache sets, so the pass misses the TLB, not the
 * L1 (every page at one offset would compete for one set). */
static unsigned long ws_pass(void)
{
	unsigned long sum = 0;
	for (long i = 0; i < ws_pages; i++) sum += (unsigned char)ws[i * PAGE + ((i * 64) & (PAGE - 1))];
	return sum;
}

static void refill_main(int index)
{
	uint64_t last = __builtin_ia32_rdtsc();
	long seen = 0;
	atomic_fetch_add(&watchers, 1);
	for (;;) {
		long g;
		while ((g = atomic_load_explicit(&tok_go, memory_order_acquire)) == seen &&
		       !atomic_load_explicit(&stop_threads, memory_order_relaxed))
			watch(&last, index);
		if (atomic_load(&stop_threads)) break;
		seen = g;
		int quiet = atomic_load(&tok_quiet);
		uint64_t t0 = t_start();
		ws_sink += ws_pass();
		uint64_t t1 = t_stop();
		book(quiet ? L_PASS_QUIET : L_PASS, t1 - t0);
		/* the pass ran on this CPU: no gap */
		last = t1;
		atomic_store_explicit(&heartbeat[index], t1, memory_order_relaxed);
		atomic_store_explicit(&tok_done, g, memory_order_release);
	}
}

static void lazy_main(void)
{
	int seen = 0;
	for (;;) {
		atomic_store(&asleep, 1);
		while (atomic_load(&wake_word) == seen && !atomic_load(&stop_threads))
			syscall(SYS_futex, &wake_word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
		uint64_t now = t_stop();
		atomic_store(&asleep, 0);
		if (atomic_load(&stop_threads)) break;
		seen = atomic_load(&wake_word);
		int quiet = atomic_load(&tok_quiet);
		book(quiet ? L_WAKE_QUIET : L_WAKE, now - atomic_load(&wake_sent));
		uint64_t t0 = t_start();
		ws_sink += ws_pass();
		book(quiet ? L_PASS_QUIET : L_PASS, t_stop() - t0);
		atomic_store(&tok_done, seen);
	}
}

/* A region of n read-write pages between two PROT_NONE pages: it cannot merge with a
 * neighbouring mapping, so it is a VMA of its own. */
static char *fenced_map(long n)
{
	char *base = mmap(NULL, (n + 2) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) die("mmap");
	char *inner = base + PAGE;
	if (mprotect(inner, n * PAGE, PROT_READ | PROT_WRITE)) die("mprotect");
	madvise(inner, n * PAGE, MADV_NOHUGEPAGE);
	for (long i = 0; i < n; i++) inner[i * PAGE] = 1;
	return inner;
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
	if (mode == W_REFILL && o->index == 1) {
		refill_main(o->index);
		return NULL;
	}
	if (mode == W_LAZY && o->index == 1) {
		lazy_main();
		return NULL;
	}
	if (mode == W_UFFD) {
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

/* thread 1 makes one pass; ``quiet``: no flushing call came before it */
static void hand_token(int quiet)
{
	atomic_store(&tok_quiet, quiet);
	long g = atomic_fetch_add_explicit(&tok_go, 1, memory_order_acq_rel) + 1;
	while (atomic_load_explicit(&tok_done, memory_order_acquire) != g) {
	}
}

static void round_refill(void)
{
	timed_mprotect(PROT_READ, L_RO);
	hand_token(0);
	timed_mprotect(PROT_READ | PROT_WRITE, L_RW);
	if (dirty > 0.0) write_pages(dirty);
	hand_token(0);
	hand_token(1);
	hand_token(1);
}

/* lazy_wake: until thread 1 blocks, then long enough for its CPU to go idle (lazy) */
static void wait_asleep(void)
{
	struct timespec a, b;
	while (!atomic_load(&asleep)) {
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	do clock_gettime(CLOCK_MONOTONIC, &b);
	while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < SETTLE_NS);
}

static void wake_sleeper(int quiet)
{
	atomic_store(&tok_quiet, quiet);
	int g = atomic_load(&wake_word) + 1;
	atomic_store(&wake_sent, t_start());
	atomic_store(&wake_word, g);
	syscall(SYS_futex, &wake_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	while (atomic_load(&tok_done) != g) {
	}
}

static void round_lazy_wake(void)
{
	wait_asleep();
	uint64_t t0 = __builtin_ia32_rdtsc();
	timed_mprotect(PROT_READ, L_RO);
	timed_mprotect(PROT_READ | PROT_WRITE, L_RW);
	if (dirty > 0.0) write_pages(dirty);
	uint64_t calls = __builtin_ia32_rdtsc() - t0;
	wake_sleeper(0);
	/* the quiet wake comes after as long a sleep: a vCPU halted longer may wake slower */
	wait_asleep();
	t0 = __builtin_ia32_rdtsc();
	while (__builtin_ia32_rdtsc() - t0 < calls) {
	}
	wake_sleeper(1);
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
		else if (!strcmp(k, "ws")) ws_pages = atol(v);
		else if (!strcmp(k, "vma")) vma_pages = atol(v);
		else if (!strcmp(k, "trace")) trace_dir = v;
		else { fprintf(stderr, "bench: unknown key %s\n", k); return 2; }
	}
	if (ncpus < 1 || pages < 1 || rounds < 1 || trials < 1) {
		fprintf(stderr, "bench: need cpus, pages, rounds, trials >= 1\n");
		return 2;
	}
	for (mode = 0; mode < N_MODES && strcmp(workload, mode_names[mode]); mode++) {
	}
	if (mode == N_MODES) {
		fprintf(stderr, "bench: unknown workload %s\n", workload);
		return 2;
	}
	if ((mode == W_REFILL || mode == W_LAZY) && (ncpus < 2 || ws_pages < 1)) {
		fprintf(stderr, "bench: %s needs 2 cpus and ws >= 1\n", workload);
		return 2;
	}
	if (mode == W_VMA && vma_pages < pages) {
		fprintf(stderr, "bench: mprotect_vma needs vma >= pages\n");
		return 2;
	}
	s0 = seed * 2654435761ULL + 1;
	for (int l = 0; l < N_LABELS; l++) books[l].s = calloc(max_samples > 0 ? max_samples : 1, sizeof(uint64_t));
	if (trace_dir) trace_setup();
	pin(cpus[0]);
	size_t len = pages * PAGE;
	if (mode == W_VMA) {
		/* the range in the middle of a VMA of its own */
		range = fenced_map(vma_pages) + ((vma_pages - pages) / 2) * PAGE;
	} else {
		range = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (range == MAP_FAILED) die("mmap");
		/* no transparent huge page: the model's range is 4 KiB PTEs */
		madvise(range, len, MADV_NOHUGEPAGE);
		for (long i = 0; i < pages; i++) range[i * PAGE] = 1;
	}
	if (mode == W_REFILL || mode == W_LAZY) ws = fenced_map(ws_pages);
	int is_uffd = mode == W_UFFD;
	if (is_uffd) {
		const char *why = uffd_setup(range, len);
		if (why) {
			printf("{\"skip\":\"%s\"}\n", why);
			return 0;
		}
		unprotected = calloc(pages, 1);
		if (ncpus < 2) { fprintf(stderr, "bench: uffd_wp needs a monitor and a writer (2 cpus)\n"); return 2; }
	}
	if ((mode == W_TOGGLE || mode == W_VMA) && dirty == 0.0 && madvise(range, len, MADV_FREE))
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
		if (recording) trace_begin(t);
		uint64_t c0 = t_start();
		off0 += open_gaps(c0);
		for (long r = 0; r < n; r++) {
			switch (mode) {
			case W_UFFD: round_uffd_wp(ncpus - 1); break;
			case W_MADV: round_madv_free(); break;
			case W_REFILL: round_refill(); break;
			case W_LAZY: round_lazy_wake(); break;
			default: round_mprotect_toggle(); break;   /* mprotect_toggle, mprotect_vma */
			}
		}
		uint64_t c1 = t_stop();
		if (recording) trace_end(t);
		unsigned long spin1 = spin_work, off1 = atomic_load(&off_cycles) + open_gaps(c1);
		read_irq_rows(tlb1, cal1);
		if (t >= 0) {
			print_trial(t, tlb0, cal0, tlb1, cal1, c1 - c0, spin1 - spin0, off1 - off0);
			trace_sync();
		}
	}
	atomic_store(&stop_threads, 1);
	atomic_fetch_add(&wake_word, 1);
	syscall(SYS_futex, &wake_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	pthread_mutex_lock(&idle_lock);
	pthread_cond_broadcast(&idle_cond);
	pthread_mutex_unlock(&idle_lock);
	for (int i = 1; i < ncpus; i++) pthread_join(others[i].tid, NULL);
	return 0;
}
