# rule: a GPL-only helper (bpf_probe_read_user) may not be called by a program whose license is not GPL-compatible.
# context: tracing
# license: Proprietary
# reject: GplOnlyHelper at 5
mov %r1, %r10               # 0
add %r1, -8                 # 1
mov %r2, 8                  # 2
mov %r3, 0                  # 3
mov %r0, 0                  # 4
call 112                    # 5: bpf_probe_read_user
mov %r0, 0                  # 6
exit                        # 7
