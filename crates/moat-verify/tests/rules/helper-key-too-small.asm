# rule: a map key argument must point to key_size accessible bytes.
# context: buffer 8
# map: values hash 8 8 16
# reject: HelperMemOutOfBounds at 5
stw [%r10-4], 0             # 0: key = 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: bpf_map_lookup_elem
mov %r0, 0
exit
