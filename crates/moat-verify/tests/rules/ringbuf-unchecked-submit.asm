# rule: a reservation must be checked for null before it is submitted.
# context: buffer 8
# map: events ringbuf 0 0 4096
# reject: HelperArg at 7
lddw %r1, map_idx(0)        # 0
mov %r2, 8                  # 2
mov %r3, 0                  # 3
call 131                    # 4: bpf_ringbuf_reserve
mov %r1, %r0                # 5
mov %r2, 0                  # 6
call 132                    # 7
mov %r0, 0
exit
