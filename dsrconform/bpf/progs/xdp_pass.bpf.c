// SPDX-License-Identifier: GPL-2.0
/* xdp_pass: the smallest useful programs, used by `dsrconform doctor` to prove that this machine
 * can compile, load, run (BPF_PROG_TEST_RUN) and natively attach XDP, and attach tc (clsact)
 * programs (dsrconform/features.py probes each); labs can use dsrc_pass as the XDP_PASS program
 * a veth peer needs for native XDP_TX to be delivered (docs/kernel.md). */
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

/* The feature probe of bpf_skb_adjust_room (the reference agents decapsulate with it): grow the
 * frame by an IPv4 header's 20 bytes right after the MAC header. The probe runs it through
 * BPF_PROG_TEST_RUN and checks the output is 20 bytes longer; a kernel without the helper
 * refuses the program at load time, one that fails it at run time returns TC_ACT_SHOT. */
SEC("tc")
int dsrc_tc_adjust_room(struct __sk_buff *skb)
{
	if (bpf_skb_adjust_room(skb, 20, BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
