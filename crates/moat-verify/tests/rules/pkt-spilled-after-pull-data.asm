# rule: a packet pointer spilled to the stack is invalid after bpf_skb_pull_data, like one in a register (the kernel clears spilled packet pointers too).
# context: tc
# reject: NotAPointer at 12
mov %r6, %r1                # 0
ldxw %r7, [%r1+76]          # 1: data
ldxw %r8, [%r1+80]          # 2: data_end
mov %r4, %r7                # 3
add %r4, 1                  # 4
jgt %r4, %r8, out           # 5
stxdw [%r10-8], %r7         # 6
mov %r1, %r6                # 7
mov %r2, 0                  # 8
call 39                     # 9: bpf_skb_pull_data
ldxdw %r7, [%r10-8]         # 10
mov %r0, 0                  # 11
ldxb %r0, [%r7+0]           # 12
exit                        # 13
out:
mov %r0, 0                  # 14
exit                        # 15
