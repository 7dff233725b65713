# rule: a ring buffer reservation must be released on every path, not just one.
# context: buffer 8
# map: events ringbuf 0 0 4096
# reject: UnreleasedReference at 12
ldxb %r6, [%r1+0]           # 0
lddw %r1, map_idx(0)        # 1
mov %r2, 8                  # 3
mov %r3, 0                  # 4
call 131                    # 5
jeq %r0, 0, out             # 6
jeq %r6, 0, skip            # 7: no submit when the first byte is 0
mov %r1, %r0                # 8
mov %r2, 0                  # 9
call 132                    # 10
skip:
mov %r0, 0                  # 11
out:
exit                        # 12
