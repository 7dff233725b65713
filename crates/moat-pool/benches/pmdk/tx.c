/* PMDK reference for BENCHMARKS.md "Persistent pools (issue 8)": the same small transaction as
 * moat-pool's commit benchmark -- update one 8-byte field, commit durably -- through libpmemobj.
 *
 *   cc -O2 -o /tmp/pmdk_tx tx.c -lpmemobj && /tmp/pmdk_tx /dev/shm/pmdk.pool 200000
 *   PMEM_IS_PMEM_FORCE=1 /tmp/pmdk_tx /dev/shm/pmdk.pool 200000   # flush+fence instead of msync
 */
#include <libpmemobj.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct root { uint64_t field; uint64_t pad[7]; };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s POOL N\n", argv[0]); return 2; }
    long n = atol(argv[2]);
    unlink(argv[1]);
    PMEMobjpool *pop = pmemobj_create(argv[1], "moat-bench", 8 << 20, 0600);
    if (!pop) { perror("pmemobj_create"); return 1; }
    PMEMoid r = pmemobj_root(pop, sizeof(struct root));
    struct root *root = pmemobj_direct(r);
    for (long i = 0; i < n / 10; i++) { /* warm-up */
        TX_BEGIN(pop) { pmemobj_tx_add_range_direct(&root->field, 8); root->field = i; } TX_END
    }
    double best = 1e18;
    for (int round = 0; round < 5; round++) {
        double t = now();
        for (long i = 0; i < n; i++) {
            TX_BEGIN(pop) {
                pmemobj_tx_add_range_direct(&root->field, 8);
                root->field = i;
            } TX_END
        }
        double per = (now() - t) / n;
        if (per < best) best = per;
    }
    printf("pmdk libpmemobj tx (add_range 8 B + store + commit): %.0f ns/tx (best of 5 x %ld), is_pmem=%d\n",
           best, n, pmemobj_direct(r) && getenv("PMEM_IS_PMEM_FORCE") ? 1 : 0);
    pmemobj_close(pop);
    unlink(argv[1]);
    return 0;
}
