# rule: bpf_loop may run its callback zero times, so the caller may not rely on what the callback wrote.
# FIXME: moat accepts this type confusion: call_helper verifies a callback for exactly one invocation and continues with the callback's final state, so after bpf_loop the slot fp-8 is believed to hold the pointer the callback spilled there, although with nr_loops = 0 it still holds the number 4096, which the store at 9 then uses as an address. The kernel verifies the callback as a loop that may run zero or more times (it also needs BTF func_info for the callback, so it cannot be loaded here).
# context: buffer 8
# accept
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
