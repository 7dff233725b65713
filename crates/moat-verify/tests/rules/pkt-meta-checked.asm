# rule: packet metadata proven by a comparison with data is safe to read.
# FIXME: moat never proves a data_meta range (a data_meta-vs-data comparison refines nothing and pkt_meta accesses are always out of bounds); the kernel accepts this program (find_good_pkt_pointers on PTR_TO_PACKET_META).
# context: xdp
# reject: OutOfBounds at 5
ldxw %r2, [%r1+8]           # 0: data_meta
ldxw %r3, [%r1+0]           # 1: data
mov %r4, %r2                # 2
add %r4, 4                  # 3
jgt %r4, %r3, out           # 4
ldxw %r0, [%r2+0]           # 5
exit
out:
mov %r0, 0
exit
