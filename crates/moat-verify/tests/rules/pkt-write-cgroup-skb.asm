# rule: a program type whose packet is read-only may not store into it.
# context: cgroup-skb
# reject: ReadOnly at 5
ldxw %r2, [%r1+76]          # 0: data
ldxw %r3, [%r1+80]          # 1: data_end
mov %r4, %r2                # 2
add %r4, 1                  # 3
jgt %r4, %r3, out           # 4
stb [%r2+0], 0              # 5
out:
mov %r0, 1
exit
