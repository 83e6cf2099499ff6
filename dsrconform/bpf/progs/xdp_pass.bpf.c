// SPDX-License-Identifier: GPL-2.0
/* xdp_pass: the smallest useful programs, used by `dsrconform doctor` to prove that this machine
 * can compile, load, run (BPF_PROG_TEST_RUN) and natively attach XDP, and attach tc (clsact)
 * programs; labs can use dsrc_pass as the XDP_PASS program a veth peer needs for native XDP_TX
 * to be delivered (KERNEL_NOTES.md). */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int dsrc_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int dsrc_tc_ok(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
