# rule: programs may only look up in a map of maps, not update or delete its slots (the kernel's check_map_func_compatibility).
# context: xdp
# map: outer array_of_maps 4 4 2 inner=1
# map: inner array 4 8 1
# reject: HelperArg at 9
stw [%r10-4], 0             # 0
stw [%r10-8], 0             # 1
mov %r2, %r10               # 2
add %r2, -4                 # 3
mov %r3, %r10               # 4
add %r3, -8                 # 5
lddw %r1, map_idx(0)        # 6
mov %r4, 0
call 2                      # 9: bpf_map_update_elem
mov %r0, 2
exit
