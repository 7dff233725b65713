# rule: only the pointer bpf_ringbuf_reserve returned, unmodified, can be submitted.
# context: buffer 8
# map: events ringbuf 0 0 4096
# reject: HelperArg at 9
lddw %r1, map_idx(0)        # 0
mov %r2, 8                  # 2
mov %r3, 0                  # 3
call 131                    # 4: bpf_ringbuf_reserve
jeq %r0, 0, out             # 5
add %r0, 4                  # 6
mov %r1, %r0                # 7
mov %r2, 0                  # 8
call 132                    # 9
mov %r0, 0
out:
exit
