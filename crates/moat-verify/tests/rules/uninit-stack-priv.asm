# rule: a privileged program may read uninitialised stack, as the kernel allows root (twin of uninit-stack-unpriv).
# context: buffer 8
# accept
ldxdw %r0, [%r10-8]
exit
