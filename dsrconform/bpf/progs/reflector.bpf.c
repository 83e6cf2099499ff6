// SPDX-License-Identifier: GPL-2.0
/* reflector: the baseline device under test of `dsrconform bench mux`. It swaps the Ethernet
 * source and destination and sends every frame back out of the interface it came in on
 * (XDP_TX): the cheapest thing an XDP program can do with a packet, so a MUX's rate divided by
 * this one's is the fraction of the veth pipeline's capacity the MUX leaves. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int dsrc_reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u16 *mac = data;
	__u16 tmp;

	/* The verifier refuses any packet access not proven to lie before data_end. */
	if (data + ETH_HLEN > data_end)
		return XDP_DROP;

	/* Words 0-2 are the destination MAC, 3-5 the source. */
	tmp = mac[0]; mac[0] = mac[3]; mac[3] = tmp;
	tmp = mac[1]; mac[1] = mac[4]; mac[4] = tmp;
	tmp = mac[2]; mac[2] = mac[5]; mac[5] = tmp;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
