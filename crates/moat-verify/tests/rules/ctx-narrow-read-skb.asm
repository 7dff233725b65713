# rule: a narrow, aligned load of a __sk_buff number (the low half of protocol) is allowed, as the kernel allows it.
# context: tc
# accept
ldxh %r0, [%r1+16]          # 0
exit                        # 1
