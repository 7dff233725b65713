# rule: bpf_spin_unlock needs a lock taken before it.
# context: buffer 8
# map: values array 4 8 1
# reject: UnlockWithoutLock at 8
stw [%r10-4], 0             # 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5
jeq %r0, 0, out             # 6
mov %r1, %r0                # 7
call 94                     # 8: bpf_spin_unlock, nothing held
out:
mov %r0, 0                  # 9
exit                        # 10
