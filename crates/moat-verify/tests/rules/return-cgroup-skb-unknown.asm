# rule: a cgroup skb program must return a number known to be 0 or 1: a packet byte may be anything.
# context: cgroup-skb
# reject: ReturnOutOfRange at 7
ldxw %r2, [%r1+76]          # 0: data
ldxw %r3, [%r1+80]          # 1: data_end
mov %r0, 1                  # 2
mov %r4, %r2                # 3
add %r4, 1                  # 4
jgt %r4, %r3, done          # 5
ldxb %r0, [%r2+0]           # 6
done:
exit                        # 7
