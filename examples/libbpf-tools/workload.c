// The deterministic workload `moat load`'s parity tests trace with Debian's libbpf tools, once on
// the kernel and once on moat: `workload N`, after a line on standard input (sent once the tool
// has attached), makes exactly N rounds of
//
//   - `bundled_sleep(i)`, a function of the bundled library `libmoatwork.so` (`moatwork.c`) that
//     sleeps 100 microseconds, for `funclatency moatwork:bundled_sleep`;
//   - one `usleep(1500)` of the C library, for `funclatency c:usleep`;
//   - one `getppid()` system call, for `syscount`;
//   - one `getaddrinfo("localhost")`, for `gethostlatency`;
//   - one `open("/dev/null")` (an `openat` system call) and its `close`, for `opensnoop`;
//   - one `kill(getpid(), 0)` (signal 0: a check that the process exists), for `sigsnoop -k`;
//
// prints `done N` and waits for standard input to end, in `poll` (where moat may inject its agent).
// Nothing else of it calls those.
//
// Built by the tests with `cc` (the library with `-shared -fPIC`, this program linked to it with
// an rpath); no clang needed.
#define _GNU_SOURCE
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

// In the bundled library, `moatwork.c`.
int bundled_sleep(int i);

// Waits in `poll` (not in `read`, which stdio makes holding the stream's lock) until standard input
// has a line or ends: a safe point for moat to inject its agent (`moat_agent::inject`).
static int next_line(char *line, int size) {
    struct pollfd p = {0, POLLIN, 0};
    while (poll(&p, 1, -1) < 0) {
    }
    return fgets(line, size, stdin) != NULL;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100;
    char line[64];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready %d\n", getpid());
    if (!next_line(line, sizeof line)) return 1;
    long sum = 0;
    for (long i = 0; i < n; i++) {
        sum += bundled_sleep((int)i);
        usleep(1500);
        sum += getppid() > 0;
        struct addrinfo *res = NULL;
        if (getaddrinfo("localhost", NULL, NULL, &res) == 0) freeaddrinfo(res);
        int fd = open("/dev/null", O_RDONLY);
        if (fd >= 0) close(fd);
        sum += kill(getpid(), 0) == 0;
    }
    printf("done %ld\n", n);
    while (next_line(line, sizeof line)) {
    }
    return sum == 0;
}
