# rule: a reservation can be released only once (after the first release every copy of the pointer is a number).
# context: buffer 8
# map: events ringbuf 0 0 4096
# reject: HelperArg at 12
lddw %r1, map_idx(0)        # 0
mov %r2, 8                  # 2
mov %r3, 0                  # 3
call 131                    # 4: bpf_ringbuf_reserve
jeq %r0, 0, out             # 5
mov %r6, %r0                # 6
mov %r1, %r6                # 7
mov %r2, 0                  # 8
call 132                    # 9
mov %r1, %r6                # 10
mov %r2, 0                  # 11
call 132                    # 12
mov %r0, 0
out:
exit
