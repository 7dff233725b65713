# rule: packet pointers are invalid after a helper that may move the packet (bpf_xdp_adjust_head).
# context: xdp
# reject: NotAPointer at 9
mov %r6, %r1                # 0
ldxw %r7, [%r1+0]           # 1: data
ldxw %r8, [%r1+4]           # 2: data_end
mov %r4, %r7                # 3
add %r4, 1                  # 4
jgt %r4, %r8, out           # 5
mov %r1, %r6                # 6
mov %r2, 4                  # 7
call 44                     # 8: bpf_xdp_adjust_head
ldxb %r0, [%r7+0]           # 9
exit
out:
mov %r0, 0
exit
