# rule: ldabs/ldind exist only for socket filters and tc programs.
# context: xdp
# reject: LegacyPacketLoad at 1
mov %r6, %r1
ldabsb 12
exit
