# rule: pruning pairs ids one to one: a bound proven through one packet pointer covers its copies only. The first path (r7 a copy of r5, one id) is verified and stored at `join`; the second (r7 made apart, its own id) must not be pruned by it, or its unchecked read through r7 would pass.
# context: xdp
# reject: PacketOutOfBounds at 17
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
ldxw %r6, [%r1+12]          # 2: any number
mov %r4, %r6                # 3
and %r4, 15                 # 4
jeq %r6, 0, apart           # 5
mov %r5, %r2                # 6: first path: r7 is a copy of r5
add %r5, %r4                # 7
mov %r7, %r5                # 8
ja join                     # 9
apart:
mov %r5, %r2                # 10: second path: r7 is made apart
add %r5, %r4                # 11
mov %r7, %r2                # 12
add %r7, %r4                # 13
join:
mov %r8, %r5                # 14
add %r8, 8                  # 15
jgt %r8, %r3, out           # 16
ldxdw %r0, [%r7+0]          # 17: proven for r5's id only
exit
out:
mov %r0, 0
exit
