/* The OSU patterns of moat-omb's suite (crates/moat-omb/src/suite.rs) over Open MPI, so that MPI's
 * transports run exactly what the pool and TCP run: same sizes, warm-up and iteration counts,
 * windows, pairings and timing. Collectives are MPI's own (MPI_Barrier, MPI_Bcast, MPI_Allreduce).
 *
 * usage: omb_mpi BENCH MIN MAX ITERS ITERS_LARGE WINDOW
 *   BENCH: 0 latency, 1 bw, 2 bibw, 3 mbw_mr, 4 multi_lat, 5 barrier, 6 bcast, 7 allreduce
 *   ITERS, ITERS_LARGE: 0 = OSU's defaults
 * Rank 0 prints one "ROW size value [rate]" line per size (µs, or MB/s and messages/s). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LARGE 8192

static void counts(int bench, size_t size, long it, long itl, long *iters, long *skip) {
    int large = size > LARGE;
    long i = large ? itl : it;
    if (i > 0) { *iters = i; *skip = i / 10 > 0 ? i / 10 : 1; return; }
    switch (bench) {
    case 0: case 4: *iters = large ? 1000 : 10000; *skip = large ? 10 : 100; break;
    case 1: case 2: case 3: *iters = large ? 20 : 100; *skip = large ? 2 : 10; break;
    default: *iters = large ? 100 : 1000; *skip = large ? 10 : 200; break;
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (argc < 7) { fprintf(stderr, "usage: omb_mpi BENCH MIN MAX ITERS ITERS_LARGE WINDOW\n"); MPI_Abort(MPI_COMM_WORLD, 2); }
    int bench = atoi(argv[1]);
    size_t min = strtoul(argv[2], 0, 10), max = strtoul(argv[3], 0, 10);
    long it = atol(argv[4]), itl = atol(argv[5]);
    int window = atoi(argv[6]);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    size_t cap = max < 8 ? 8 : max;
    char *s = malloc(cap), *r = malloc(cap);
    memset(s, 'a', cap); memset(r, 'b', cap);
    MPI_Request *req = malloc(sizeof(MPI_Request) * 2 * (window > 0 ? window : 1));
    int half = n / 2, peer = rank < half ? rank + half : (rank < 2 * half ? rank - half : -1);
    size_t first = min == 0 ? 0 : 1;
    while (first < min) first *= 2;
    if (bench == 7 && first < 8) first = 8;
    if (bench == 5) { first = 0; max = 0; }
    MPI_Barrier(MPI_COMM_WORLD);
    for (size_t size = first; size <= max; size = size ? size * 2 : 1) {
        long iters, skip;
        counts(bench, size, it, itl, &iters, &skip);
        double t0 = 0, total = 0, value = 0;
        if (bench <= 4 && peer >= 0) {
            for (long i = 0; i < iters + skip; i++) {
                if (i == skip) t0 = MPI_Wtime();
                if (bench == 0 || bench == 4) {
                    if (rank < peer) {
                        MPI_Send(s, size, MPI_CHAR, peer, 1, MPI_COMM_WORLD);
                        MPI_Recv(r, size, MPI_CHAR, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                    } else {
                        MPI_Recv(r, size, MPI_CHAR, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                        MPI_Send(s, size, MPI_CHAR, peer, 1, MPI_COMM_WORLD);
                    }
                } else if (bench == 2) {
                    for (int w = 0; w < window; w++)
                        MPI_Irecv(r, size, MPI_CHAR, peer, 10, MPI_COMM_WORLD, &req[w]);
                    for (int w = 0; w < window; w++)
                        MPI_Isend(s, size, MPI_CHAR, peer, 10, MPI_COMM_WORLD, &req[window + w]);
                    MPI_Waitall(2 * window, req, MPI_STATUSES_IGNORE);
                } else if (rank < peer) {
                    for (int w = 0; w < window; w++)
                        MPI_Isend(s, size, MPI_CHAR, peer, 100, MPI_COMM_WORLD, &req[w]);
                    MPI_Waitall(window, req, MPI_STATUSES_IGNORE);
                    MPI_Recv(r, 4, MPI_CHAR, peer, 101, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                } else {
                    for (int w = 0; w < window; w++)
                        MPI_Irecv(r, size, MPI_CHAR, peer, 100, MPI_COMM_WORLD, &req[w]);
                    MPI_Waitall(window, req, MPI_STATUSES_IGNORE);
                    MPI_Send(s, size < 4 ? size : 4, MPI_CHAR, peer, 101, MPI_COMM_WORLD);
                }
            }
            double secs = MPI_Wtime() - t0;
            if (bench == 0 || bench == 4) value = secs * 1e6 / (2.0 * iters);
            else value = (bench == 2 ? 2.0 : 1.0) * size * (double)iters * window / 1e6 / secs;
        } else if (bench >= 5) {
            for (long i = 0; i < iters + skip; i++) {
                double t = MPI_Wtime();
                if (bench == 5) MPI_Barrier(MPI_COMM_WORLD);
                else if (bench == 6) MPI_Bcast(s, size, MPI_CHAR, 0, MPI_COMM_WORLD);
                else MPI_Allreduce(s, r, size / 8, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
                if (i >= skip) total += MPI_Wtime() - t;
                MPI_Barrier(MPI_COMM_WORLD);
            }
            value = total * 1e6 / iters;
        }
        if (rank == 0) {
            if (bench == 3) printf("ROW %zu %.6f %.6f\n", size, value, value * 1e6 / (size ? size : 1));
            else printf("ROW %zu %.6f\n", size, value);
            fflush(stdout);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        if (size == 0 && bench == 5) break;
    }
    free(s); free(r); free(req);
    MPI_Finalize();
    return 0;
}
