# rule: a pointer that may be null cannot be passed as a helper's memory argument.
# context: buffer 8
# map: values hash 4 8 16
# reject: MaybeNull at 12
stw [%r10-4], 0             # 0: key = 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: bpf_map_lookup_elem
mov %r3, %r0                # 6
lddw %r1, map_idx(0)        # 7
mov %r2, %r10               # 9
add %r2, -4                 # 10
mov %r4, 0                  # 11
call 2                      # 12: bpf_map_update_elem
mov %r0, 0
exit
