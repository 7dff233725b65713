# rule: the same GPL-only helper is allowed under a GPL-compatible license (the safe twin of helper-gpl-only-non-gpl-license).
# context: tracing
# license: Dual BSD/GPL
# accept
mov %r1, %r10               # 0
add %r1, -8                 # 1
mov %r2, 8                  # 2
mov %r3, 0                  # 3
mov %r0, 0                  # 4
call 112                    # 5: bpf_probe_read_user
mov %r0, 0                  # 6
exit                        # 7
