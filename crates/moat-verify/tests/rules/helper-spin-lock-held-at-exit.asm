# rule: a bpf_spin_lock must be released before the program exits.
# context: buffer 8
# map: values array 4 8 1
# reject: ExitWhileLocked at 10
stw [%r10-4], 0             # 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5
jeq %r0, 0, out             # 6
mov %r1, %r0                # 7
call 93                     # 8: bpf_spin_lock, never unlocked
out:
mov %r0, 0                  # 9
exit                        # 10
