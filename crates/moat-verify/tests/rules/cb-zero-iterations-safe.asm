# rule: after bpf_loop the caller may use what holds whether or not the callback ran (the safe twin of cb-zero-iterations: the callback writes a number either way).
# context: buffer 8
# accept
stdw [%r10-8], 4096         # 0: a number in fp-8
ldxdw %r1, [%r1+0]          # 1: nr_loops, possibly 0
lddw %r2, code(cb)          # 2
mov %r3, %r10               # 4
add %r3, -8                 # 5: ctx = fp-8
mov %r4, 0                  # 6
call 181                    # 7: bpf_loop
ldxdw %r0, [%r10-8]         # 8: a number either way
exit                        # 9
cb:
stdw [%r2+0], 7             # 10: *ctx = 7
mov %r0, 0                  # 11
exit                        # 12
