# rule: bpf_loop may run its callback zero times, so the caller may not rely on what the callback wrote.
# context: buffer 8
# reject: NotAPointer at 9
stdw [%r10-8], 4096         # 0: a number in fp-8
ldxdw %r1, [%r1+0]          # 1: nr_loops, possibly 0
lddw %r2, code(cb)          # 2
mov %r3, %r10               # 4
add %r3, -8                 # 5: ctx = fp-8
mov %r4, 0                  # 6
call 181                    # 7: bpf_loop
ldxdw %r1, [%r10-8]         # 8: a pointer only if the callback ran
stdw [%r1+0], 0             # 9
mov %r0, 0                  # 10
exit                        # 11
cb:
stxdw [%r2+0], %r2          # 12: *ctx = ctx, a pointer
mov %r0, 0
exit
