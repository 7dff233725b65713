# rule: an atomic operation at a variable offset must be aligned whatever the offset's value.
# context: buffer 8
# map: values array 4 16 1
# reject: MisalignedAtomic at 11
stw [%r10-4], 0             # 0: key = 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: bpf_map_lookup_elem
jeq %r0, 0, out             # 6
ldxb %r1, [%r0+0]           # 7
and %r1, 7                  # 8: 0..7
add %r0, %r1                # 9
mov %r2, 1                  # 10
lock add [%r0+0], %r2       # 11
out:
mov %r0, 0
exit
