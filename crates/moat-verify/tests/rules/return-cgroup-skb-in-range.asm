# rule: a cgroup skb program returning a bit of a packet byte (0 or 1) is accepted (the safe twin of the return range rules).
# context: cgroup-skb
# accept
ldxw %r2, [%r1+76]          # 0: data
ldxw %r3, [%r1+80]          # 1: data_end
mov %r0, 1                  # 2
mov %r4, %r2                # 3
add %r4, 1                  # 4
jgt %r4, %r3, done          # 5
ldxb %r0, [%r2+0]           # 6
and %r0, 1                  # 7
done:
exit                        # 8
