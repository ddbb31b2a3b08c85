#!/bin/bash
# repl_proxy_order.sh -- G6/G7 on the wire: a fault-injecting proxy between
# leader and follower swaps two messages of the leader -> follower stream,
# then replays an earlier message (of this connection or of an earlier one).
# In each round the follower applies nothing wrong (frozen, it holds a prefix
# of the leader's log, byte for byte, all applied, verified), its log shows
# the connection ending and its reconnecting, and once the proxy passes
# everything again it converges to exactly the leader's tree and log.
. "$(dirname "$0")/../integration/repl_lib.sh"

rl_proxy_setup
rl_proxy_round reorder 3000 down
rl_proxy_round replay 3000 down
rl_proxy_finish
exit 0
