# rule: a ring buffer reservation must be submitted or discarded before exit.
# context: buffer 8
# map: events ringbuf 0 0 4096
# reject: UnreleasedReference at 7
lddw %r1, map_idx(0)        # 0
mov %r2, 8                  # 2
mov %r3, 0                  # 3
call 131                    # 4: bpf_ringbuf_reserve
jeq %r0, 0, out             # 5
mov %r0, 0                  # 6
out:
exit                        # 7
