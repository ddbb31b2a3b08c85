#!/bin/bash
# repl_proxy_corrupt.sh -- G6/G7 on the wire: a fault-injecting proxy between
# leader and follower flips bits in the leader -> follower stream, then in
# the follower -> leader acknowledgements. In each round the follower applies
# nothing wrong (frozen, it holds a prefix of the leader's log, byte for byte,
# all applied, verified), its log shows the connection ending and its
# reconnecting, and once the proxy passes everything again it converges to
# exactly the leader's tree and log. Nothing crosses the wire in clear.
. "$(dirname "$0")/../integration/repl_lib.sh"

rl_proxy_setup
rl_proxy_round flip 3000 down
rl_proxy_round flip 200 up
rl_proxy_finish
exit 0
