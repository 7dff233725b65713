# rule: bpf_ringbuf_reserve needs a constant size.
# context: buffer 8
# map: events ringbuf 0 0 4096
# reject: HelperArg at 4
ldxb %r2, [%r1+0]           # 0
lddw %r1, map_idx(0)        # 1
mov %r3, 0                  # 3
call 131                    # 4
mov %r0, 0
exit
