# rule: a tail call that falls through leaves packet pointers valid, spilled ones included (the kernel does not count bpf_tail_call among the helpers that change packet data).
# context: tc
# map: jumps prog_array 4 4 8
# accept
mov %r6, %r1                # 0
ldxw %r7, [%r1+76]          # 1: data
ldxw %r8, [%r1+80]          # 2: data_end
mov %r4, %r7                # 3
add %r4, 1                  # 4
jgt %r4, %r8, out           # 5
stxdw [%r10-8], %r7         # 6
mov %r1, %r6                # 7
lddw %r2, map_idx(0)        # 8
mov %r3, 0                  # 10
call 12                     # 11: bpf_tail_call, falls through
ldxdw %r7, [%r10-8]         # 12
mov %r0, 0                  # 13
ldxb %r0, [%r7+0]           # 14
exit                        # 15
out:
mov %r0, 0                  # 16
exit                        # 17
