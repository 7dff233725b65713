# rule: bpf_spin_unlock must release the lock that is held, not another one of the value.
# context: buffer 8
# map: values array 4 16 1
# reject: UnlockOfDifferentLock at 12
stw [%r10-4], 0             # 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5
jeq %r0, 0, out             # 6
mov %r6, %r0                # 7
mov %r1, %r0                # 8
call 93                     # 9: bpf_spin_lock of bytes 0..4
mov %r1, %r6                # 10
add %r1, 8                  # 11
call 94                     # 12: bpf_spin_unlock of bytes 8..12
out:
mov %r0, 0                  # 13
exit                        # 14
