# rule: an unprivileged loader may not call helpers the kernel offers only with CAP_PERFMON (bpf_trace_printk here), whatever the program type allows root.
# context: xdp
# unprivileged
# reject: HelperNeedsPerfmon at 4
stdw [%r10-8], 0            # 0
mov %r1, %r10               # 1
add %r1, -8                 # 2
mov %r2, 8
call 6                      # 4: bpf_trace_printk
mov %r0, 2
exit
