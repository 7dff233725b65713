# rule: after a bpf_tail_call that falls through, the program sets r0 before it returns (the safe twin of tail-call-r0-void).
# context: tc
# map: jumps prog_array 4 4 8
# accept
mov %r6, %r1                # 0
lddw %r2, map_idx(0)        # 1
mov %r3, 0                  # 3
call 12                     # 4
mov %r0, 0                  # 5
exit                        # 6
