# rule: a socket filter may use ldabs with the context in r6 (twin of ldabs-xdp).
# context: socket
# accept
mov %r6, %r1
ldabsh 12
exit
