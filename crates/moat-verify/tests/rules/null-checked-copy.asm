# rule: checking one copy of a lookup result checks every copy (twin of null-deref).
# context: buffer 8
# map: values hash 4 8 16
# accept
stw [%r10-4], 0             # 0: key = 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: bpf_map_lookup_elem
mov %r6, %r0                # 6
jeq %r0, 0, out             # 7
ldxdw %r1, [%r6+0]          # 8
out:
mov %r0, 0
exit
