# rule: a map value pointer moved by a constant near i64::MAX is refused.
# context: buffer 8
# map: values array 4 8 1
# reject: PointerOffset at 9
stw [%r10-4], 0                 # 0: key = 0
mov %r2, %r10                   # 1
add %r2, -4                     # 2
lddw %r1, map_idx(0)            # 3
call 1                          # 5
jeq %r0, 0, out                 # 6
lddw %r1, 0x7ffffffffffffff8    # 7
add %r0, %r1                    # 9
ldxb %r1, [%r0+8]               # 10
out:
mov %r0, 0
exit
