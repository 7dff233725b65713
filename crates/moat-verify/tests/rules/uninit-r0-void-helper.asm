# rule: a helper returning void leaves r0 uninitialised, so exit cannot follow it directly.
# context: buffer 8
# map: events ringbuf 0 0 4096
# reject: UninitRegister at 9
lddw %r1, map_idx(0)        # 0
mov %r2, 8                  # 2
mov %r3, 0                  # 3
call 131                    # 4: bpf_ringbuf_reserve
jeq %r0, 0, out             # 5
mov %r1, %r0                # 6
mov %r2, 0                  # 7
call 132                    # 8: bpf_ringbuf_submit returns void
exit                        # 9
out:
exit
