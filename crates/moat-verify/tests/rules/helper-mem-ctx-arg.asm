# rule: the context is not memory a helper may read (bpf_ringbuf_output of ctx).
# context: xdp
# map: events ringbuf 0 0 4096
# reject: HelperArg at 5
mov %r2, %r1                # 0
lddw %r1, map_idx(0)        # 1
mov %r3, 8                  # 3
mov %r4, 0                  # 4
call 130                    # 5
exit
