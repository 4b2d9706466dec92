//! The fork server caps its live children (`--max-conns`).

#[test]
fn children_are_capped_by_max_conns() {
    let (_, children) =
        conformance::checks::max_conns_caps_what_clients_get(env!("CARGO_BIN_EXE_server-fork"));
    assert_eq!(
        children, 2,
        "at most 2 children at once, and the cap was reached"
    );
}
