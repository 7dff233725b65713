# rule: a bpf_loop callback must return 0 or 1.
# context: buffer 8
# reject: CallbackReturn at 8
mov %r1, 4                  # 0
lddw %r2, code(cb)          # 1
mov %r3, 0                  # 3
mov %r4, 0                  # 4
call 181                    # 5
exit                        # 6
cb:
mov %r0, 2                  # 7
exit                        # 8
