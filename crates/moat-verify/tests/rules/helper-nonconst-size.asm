# rule: a helper's size argument must be bounded.
# context: tracing
# reject: HelperArg at 4
ldxdw %r2, [%r1+0]          # 0: unknown
mov %r1, %r10               # 1
add %r1, -16                # 2
mov %r3, 0                  # 3
call 4                      # 4: bpf_probe_read
exit
