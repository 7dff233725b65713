# rule: a recvmsg4 program must return 1: 0 is refused, as the kernel's check_return_code refuses it.
# context: cgroup-sock-addr recvmsg4
# reject: ReturnOutOfRange at 1
mov %r0, 0                  # 0
exit                        # 1
