# rule: a map value access before the value's start is out of bounds.
# context: buffer 8
# map: values array 4 8 1
# reject: OutOfBounds at 7
stw [%r10-4], 0             # 0: key = 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: bpf_map_lookup_elem
jeq %r0, 0, out             # 6
ldxb %r1, [%r0-1]           # 7
out:
mov %r0, 0
exit
