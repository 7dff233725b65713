# rule: a lightweight tunnel program reads len and writes mark, priority and cb[] of its __sk_buff, as the kernel's lwt_is_valid_access allows.
# context: lwt-out
# accept
ldxw %r2, [%r1+0]           # 0: len
stxw [%r1+8], %r2           # 1: mark
stw [%r1+32], 3             # 2: priority
stw [%r1+48], 1             # 3: cb[0]
mov %r0, 0                  # 4
exit                        # 5
