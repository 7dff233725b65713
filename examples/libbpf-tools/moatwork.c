// The bundled library of `workload.c`: `bundled_sleep`, a function of the bundled program that
// `funclatency -p PID moatwork:bundled_sleep` traces (libbpf tools find a traced process's code
// by library name, `lib<NAME>.so`, in its mappings). Sleeps 100 microseconds (`nanosleep`).
#include <time.h>

__attribute__((noinline)) int bundled_sleep(int i) {
    struct timespec t = {0, 100 * 1000};
    nanosleep(&t, NULL);
    return i + 1;
}
