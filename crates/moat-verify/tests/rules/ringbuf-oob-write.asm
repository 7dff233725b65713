# rule: a store past the reserved size is out of bounds.
# context: buffer 8
# map: events ringbuf 0 0 4096
# reject: OutOfBounds at 6
lddw %r1, map_idx(0)        # 0
mov %r2, 8                  # 2
mov %r3, 0                  # 3
call 131                    # 4: bpf_ringbuf_reserve
jeq %r0, 0, out             # 5
stdw [%r0+8], 0             # 6: 8 bytes reserved
mov %r1, %r0
mov %r2, 0
call 132
mov %r0, 0
out:
exit
