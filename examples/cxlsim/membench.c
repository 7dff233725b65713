/* Microbenchmarks whose CXL traffic is known by construction, for validating `moat cxlsim`.
 *
 *   membench chase  MIB STEPS    dependent loads over a random cycle of MIB MiB: every load misses
 *   membench random MIB STEPS    independent loads at random slots (misses that overlap)
 *   membench stream MIB PASSES   sequential sums over MIB MiB (prefetched: bandwidth-bound)
 *   membench sweep  MIB PASSES   sequential passes over a fresh array and nothing else: the first
 *                                writes it, the others sum it (no shuffle, so that an exact
 *                                reference knows its misses: one per line per pass)
 *   membench mixed  MIB STEPS    a chase alternating between a small local array (MIB/64 MiB,
 *                                below cxl_threshold.o's 1 MiB default when MIB <= 64) and a large one
 *
 * The large array is one malloc of MIB MiB, so cxl_threshold.o (and cxl_all.o) place it on CXL;
 * mixed's small array is malloc'd separately. Prints the checksum and the time of the measured
 * loop (setup excluded) in ns per step. Built by the tests: cc -O2 -o membench membench.c */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* A random cyclic permutation (Sattolo). */
static uint64_t *cycle(size_t n)
{
	uint64_t *a = malloc(n * sizeof *a);

	if (!a) {
		perror("malloc");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		a[i] = i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = next_random() % i;
		uint64_t t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
	return a;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: membench chase|random|stream|sweep|mixed MIB STEPS\n");
		return 2;
	}
	const char *mode = argv[1];
	size_t n = (size_t)strtoull(argv[2], 0, 10) * (1 << 20) / 8;
	uint64_t steps = strtoull(argv[3], 0, 10);
	uint64_t sum = 0, p = 0, count = 0;
	double start, elapsed;

	if (n < 1024) {
		fprintf(stderr, "membench: at least 1 MiB\n");
		return 2;
	}
	if (!strcmp(mode, "chase")) {
		uint64_t *a = cycle(n);

		start = now();
		for (uint64_t i = 0; i < steps; i++)
			p = a[p];
		elapsed = now() - start;
		sum = p;
		count = steps;
	} else if (!strcmp(mode, "random")) {
		uint64_t *a = cycle(n);

		start = now();
		for (uint64_t i = 0; i < steps; i++)
			sum += a[next_random() % n];
		elapsed = now() - start;
		count = steps;
	} else if (!strcmp(mode, "stream")) {
		uint64_t *a = cycle(n);

		start = now();
		for (uint64_t pass = 0; pass < steps; pass++)
			for (size_t i = 0; i < n; i++)
				sum += a[i];
		elapsed = now() - start;
		count = steps * n;
	} else if (!strcmp(mode, "sweep")) {
		uint64_t *a = malloc(n * sizeof *a);

		if (!a) {
			perror("malloc");
			return 1;
		}
		start = now();
		for (uint64_t pass = 0; pass < steps; pass++)
			for (size_t i = 0; i < n; i++) {
				if (pass == 0)
					a[i] = i;
				else
					sum += a[i];
			}
		elapsed = now() - start;
		count = steps * n;
	} else if (!strcmp(mode, "mixed")) {
		size_t small_n = n / 64 < 1024 ? 1024 : n / 64;
		uint64_t *big = cycle(n);
		uint64_t *small = cycle(small_n);
		uint64_t q = 0;

		start = now();
		for (uint64_t i = 0; i < steps; i++) {
			p = big[p];
			for (int k = 0; k < 4; k++)
				q = small[q];
		}
		elapsed = now() - start;
		sum = p + q;
		count = steps;
	} else {
		fprintf(stderr, "membench: unknown mode %s\n", mode);
		return 2;
	}
	printf("%s %zu MiB: %llu steps, %.2f ns/step, %.3f s, checksum %llu\n", mode,
	       n * 8 >> 20, (unsigned long long)count, elapsed * 1e9 / (double)count, elapsed,
	       (unsigned long long)sum);
	return 0;
}
