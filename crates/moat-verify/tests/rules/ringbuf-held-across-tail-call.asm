# rule: a successful tail call never returns, so it may not happen while a ring buffer reservation is held.
# context: tc
# map: events ringbuf 0 0 4096
# map: jumps prog_array 4 4 8
# reject: UnreleasedReference at 12
mov %r6, %r1                # 0
lddw %r1, map_idx(0)        # 1
mov %r2, 8                  # 3
mov %r3, 0                  # 4
call 131                    # 5
jeq %r0, 0, out             # 6
mov %r7, %r0                # 7
mov %r1, %r6                # 8
lddw %r2, map_idx(1)        # 9
mov %r3, 0                  # 11
call 12                     # 12: bpf_tail_call
mov %r1, %r7                # 13
mov %r2, 0                  # 14
call 133                    # 15: bpf_ringbuf_discard
mov %r0, 0
out:
exit
