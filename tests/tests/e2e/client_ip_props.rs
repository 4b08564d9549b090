//! Property tests of client-IP resolution (issue 10, "Bad input" and "Security"): generated
//! forwarding headers against the model in `iptrack_tests::forwarding`. Not end to end, but
//! here because the generators are the harness's, shared with the long run in
//! `bench/src/bin/client_ip_props.rs` (RELIABILITY.md, "Client-IP resolution").

use iptrack_tests::forwarding::{arbitrary_lines, check, check_arbitrary, scenario};
use proptest::prelude::*;

proptest! {
    // Resolution costs microseconds; a few thousand cases keep CI under a second or two.
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    #[test]
    fn the_client_is_the_peer_unless_it_is_trusted_and_then_the_rightmost_untrusted_hop(
        s in scenario()
    ) {
        check(&s)?;
    }

    #[test]
    fn arbitrary_header_bytes_never_panic_nor_move_an_untrusted_peer(
        (trusted, header, peer, lines) in arbitrary_lines()
    ) {
        check_arbitrary(&trusted, header, peer, &lines)?;
    }
}
