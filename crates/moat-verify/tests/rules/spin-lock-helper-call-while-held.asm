# rule: no helper but bpf_spin_unlock may be called while a bpf_spin_lock is held.
# context: buffer 8
# map: values array 4 8 1
# reject: CallWhileLocked at 10
stw [%r10-4], 0             # 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5
jeq %r0, 0, out             # 6
mov %r6, %r0                # 7
mov %r1, %r0                # 8
call 93                     # 9: bpf_spin_lock
call 5                      # 10: bpf_ktime_get_ns, lock held
mov %r1, %r6                # 11
call 94                     # 12: bpf_spin_unlock
out:
mov %r0, 0                  # 13
exit                        # 14
