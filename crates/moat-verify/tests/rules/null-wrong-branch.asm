# rule: on the branch where the lookup result is null it is the number 0, not a pointer.
# context: buffer 8
# map: values hash 4 8 16
# reject: NotAPointer at 7
stw [%r10-4], 0             # 0: key = 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: bpf_map_lookup_elem
jne %r0, 0, ok              # 6
ldxdw %r1, [%r0+0]          # 7
ok:
mov %r0, 0
exit
