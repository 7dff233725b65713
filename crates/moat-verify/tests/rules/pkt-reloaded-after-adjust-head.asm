# rule: after a helper that may move the packet, pointers loaded again from the context and checked again are valid (the safe twin of pkt-after-adjust-head).
# context: xdp
# accept
mov %r6, %r1                # 0
mov %r1, %r6                # 1
mov %r2, 4                  # 2
call 44                     # 3: bpf_xdp_adjust_head
ldxw %r7, [%r6+0]           # 4: data, again
ldxw %r8, [%r6+4]           # 5: data_end, again
mov %r4, %r7                # 6
add %r4, 1                  # 7
jgt %r4, %r8, out           # 8
ldxb %r0, [%r7+0]           # 9
exit                        # 10
out:
mov %r0, 0                  # 11
exit                        # 12
