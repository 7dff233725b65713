/* A malloc/free-heavy workload for measuring allocation tracers (moat memleak, the same tracer on
 * the kernel's uprobes, heaptrack, valgrind): `mallocbench N` makes N allocations of 16 to 4111
 * bytes (malloc, calloc and realloc mixed), keeping the last 256 live and freeing the rest, and
 * prints the time the loop took per allocation ("ns_per_alloc 123.4"), so that a tracer's start-up
 * is not counted. Built as leaky.c is:
 *   cc -O1 -g -fno-omit-frame-pointer -o mallocbench examples/leaky/mallocbench.c */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define LIVE 256

static unsigned long next = 12345;

static unsigned rnd(void)
{
	next = next * 6364136223846793005UL + 1442695040888963407UL;
	return (unsigned)(next >> 33);
}

static void *allocate(void *old, unsigned size, unsigned kind)
{
	switch (kind % 8) {
	case 0:
		return calloc(1, size);
	case 1:
		return realloc(old, size);
	default:
		return malloc(size);
	}
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	void *live[LIVE] = {0};
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++) {
		unsigned r = rnd();
		unsigned slot = i % LIVE;
		unsigned kind = r >> 12;
		void *p = allocate(live[slot], 16 + r % 4096, kind);
		if (kind % 8 != 1)
			free(live[slot]);
		live[slot] = p;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (int i = 0; i < LIVE; i++)
		free(live[i]);
	double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
	printf("ns_per_alloc %.1f\n", ns / (double)n);
	return 0;
}
