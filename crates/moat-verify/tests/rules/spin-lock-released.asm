# rule: a bpf_spin_lock taken and released on every path, with plain accesses to the value in between (the safe twin of the lock rules).
# context: buffer 8
# map: values array 4 8 1
# accept
stw [%r10-4], 0             # 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5
jeq %r0, 0, out             # 6
mov %r6, %r0                # 7
mov %r1, %r0                # 8
call 93                     # 9: bpf_spin_lock
ldxdw %r2, [%r6+0]          # 10
add %r2, 1                  # 11
stxdw [%r6+0], %r2          # 12
mov %r1, %r6                # 13
call 94                     # 14: bpf_spin_unlock
out:
mov %r0, 0                  # 15
exit                        # 16
