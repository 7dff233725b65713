# rule: an unprivileged program may not copy a spilled pointer into a map through a helper's memory argument.
# context: buffer 8
# map: values hash 4 8 16
# unprivileged
# reject: PointerLeak at 9
stxdw [%r10-8], %r10        # 0: a pointer spilled
stw [%r10-12], 0            # 1: key
mov %r2, %r10               # 2
add %r2, -12                # 3
mov %r3, %r10               # 4
add %r3, -8                 # 5: value = the spilled pointer
lddw %r1, map_idx(0)        # 6
mov %r4, 0                  # 8
call 2                      # 9: bpf_map_update_elem
mov %r0, 0
exit
