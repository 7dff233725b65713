# rule: the twin of loop-counted-17bit whose sum is added to a stack pointer after the loop:
# now the sum's value matters, no exit path prunes another, and the 131 071 iterations with their
# exit paths pass the complexity limit (the kernel refuses it too).
# context: xdp
# reject: TooComplex at 6
ldxw %r1, [%r1+12]
and %r1, 0x1ffff
mov %r2, 1
mov %r3, 0
jgt %r2, %r1, done
loop:
mov %r0, %r3
rsh %r0, 3
xor %r0, %r2
add %r3, %r0
add %r2, 1
jle %r2, %r1, loop
done:
and %r3, 7
mov %r4, %r10
add %r4, -8
add %r4, %r3
stdw [%r10-16], 0
mov %r0, 0
exit
