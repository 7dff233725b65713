/* BTF-typed kernel tracing programs, which moat does not support: an fentry, an fexit and an LSM
 * hook take the traced kernel function's arguments (ctx[0] is a struct sock *), described by the
 * kernel's BTF, which a userspace host does not have. Every moat verb must say so by program and
 * section, not fail inside the program (issue 20, item 8).
 *   moat verify examples/c/fentry.o */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* The first field of the kernel's struct sock_common that the programs read. */
struct sock_family {
	unsigned int daddr;
	unsigned int saddr;
	unsigned int hash;
	unsigned short dport;
	unsigned short num;
	unsigned short family;
};

SEC("fentry/tcp_connect")
int on_connect(unsigned long long *ctx)
{
	struct sock_family *sk = (void *)ctx[0];
	return sk->family == 2;
}

SEC("fexit/tcp_connect")
int after_connect(unsigned long long *ctx)
{
	struct sock_family *sk = (void *)ctx[0];
	return sk->family == 10 && ctx[1] == 0;
}

SEC("lsm/socket_connect")
int check_connect(unsigned long long *ctx)
{
	struct sock_family *sk = (void *)ctx[0];
	return sk->dport == 0 ? -1 : 0;
}

char LICENSE[] SEC("license") = "GPL";
