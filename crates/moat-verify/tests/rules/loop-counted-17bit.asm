# rule: a counted loop up to a 17-bit bound (131 071 iterations, shaped as clang emits it: the
# exit falls through, the back-edge is taken) is accepted: the sum it keeps decides nothing, so
# each iteration's exit path is pruned against the first one (register precision and liveness, as
# the kernel); without them the exit paths pass 1M processed instructions.
# context: xdp
# accept
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
mov %r0, %r3
and %r0, 3
exit
