/* A program with a known leak pattern, for checking moat memleak against the kernel, valgrind
 * and heaptrack: each function below allocates from its own call site, and what stays
 * outstanding at exit is known by construction (see EXPECTED). Built with frame pointers, as
 * stack walkers need (the kernel's and moat's):
 *   cc -O1 -g -fno-omit-frame-pointer -fno-inline -o leaky examples/leaky/leaky.c
 * `leaky --wait` waits for SIGUSR1 before allocating and for SIGTERM (or SIGINT) before
 * exiting, sleeping in pause(), so that a tracer can attach to it and read its maps while it
 * lives.
 *
 * EXPECTED (call site: outstanding bytes in blocks):
 *   leak_small    2400 in 100   (malloc 24, never freed)
 *   leak_calloc  50000 in  50   (calloc 10 x 100)
 *   leak_realloc 60000 in  20   (malloc 100, realloc to 3000)
 *   leak_aligned  5120 in  10   (posix_memalign 64, 512)
 *   leak_half     1440 in  20   (malloc 72 forty times, half freed)
 *   churn            0 in   0   (malloc 200 then free, 1000 times) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t go, stop;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		go = 1;
	else
		stop = 1;
}

/* Kept so that valgrind sees the blocks as reachable from a global, whatever the optimiser does. */
void *volatile sink[1000];
static int sunk;

static void keep(void *p)
{
	sink[sunk++ % 1000] = p;
}

void leak_small(void)
{
	for (int i = 0; i < 100; i++)
		keep(malloc(24));
}

void leak_calloc(void)
{
	for (int i = 0; i < 50; i++)
		keep(calloc(10, 100));
}

void leak_realloc(void)
{
	for (int i = 0; i < 20; i++) {
		char *p = malloc(100);
		memset(p, 1, 100);
		keep(realloc(p, 3000));
	}
}

void leak_aligned(void)
{
	for (int i = 0; i < 10; i++) {
		void *p = NULL;
		if (posix_memalign(&p, 64, 512) == 0)
			keep(p);
	}
}

void leak_half(void)
{
	void *blocks[40];
	for (int i = 0; i < 40; i++)
		blocks[i] = malloc(72);
	for (int i = 0; i < 40; i += 2)
		free(blocks[i]);
	for (int i = 1; i < 40; i += 2)
		keep(blocks[i]);
}

void churn(void)
{
	for (int i = 0; i < 1000; i++) {
		char *volatile p = malloc(200);
		p[0] = 1;
		free(p);
	}
}

int main(int argc, char **argv)
{
	int wait = argc > 1 && strcmp(argv[1], "--wait") == 0;

	if (wait) {
		signal(SIGUSR1, on_signal);
		signal(SIGTERM, on_signal);
		signal(SIGINT, on_signal);
		printf("ready\n");
		fflush(stdout);
		while (!go)
			pause();
	}
	leak_small();
	leak_calloc();
	leak_realloc();
	leak_aligned();
	leak_half();
	churn();
	printf("done\n");
	fflush(stdout);
	while (wait && !stop)
		pause();
	return 0;
}
