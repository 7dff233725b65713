# rule: `data_end - data` is a number a program can bound and use, like any other (twin of pkt-diff-negative-arsh).
# context: xdp
# accept
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
stdw [%r10-16], 0           # 2
stdw [%r10-8], 0            # 3
mov %r4, %r3                # 4
sub %r4, %r2                # 5: the packet's length
jgt %r4, 7, out             # 6
mov %r5, %r10               # 7
add %r5, -16                # 8
add %r5, %r4                # 9: fp-16 + 0..7
ldxb %r0, [%r5+0]           # 10
out:
mov %r0, 2
exit
