# rule: ldabs needs the context pointer in r6.
# context: socket
# reject: LegacyPacketLoadNeedsCtxInR6 at 1
mov %r6, %r10
ldabsb 12
exit
