# rule: no arithmetic on a pointer that may be null.
# context: buffer 8
# map: values hash 4 8 16
# reject: NullablePointerArithmetic at 6
stw [%r10-4], 0             # 0: key = 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: bpf_map_lookup_elem
add %r0, 8                  # 6
mov %r0, 0
exit
