# rule: a loop without a proven bound exhausts the complexity limit.
# context: buffer 8
# limit: 5000
# reject: TooComplex at 2
ldxdw %r2, [%r1+0]          # 0: unknown bound
mov %r0, 0                  # 1
again:
add %r0, 1                  # 2
jlt %r0, %r2, again         # 3
exit
