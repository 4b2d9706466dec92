//! The conformance suite, run against every server binary as a subprocess on port 0.
//!
//! Each server crate has a `tests/conformance.rs` of one line:
//!
//! ```ignore
//! conformance::suite!(env!("CARGO_BIN_EXE_server-epoll"), conformance::Model::Concurrent);
//! ```
//!
//! which expands into one `#[test]` per check in [`checks`], so a failure names the server and
//! the behaviour. A third argument gives flags the server gets in every check (a variant of a
//! model, `["--accept", "handoff"]`; a worker count that does not depend on the machine):
//!
//! ```ignore
//! conformance::suite!(
//!     env!("CARGO_BIN_EXE_server-pool"),
//!     conformance::Model::Concurrent,
//!     ["--accept", "handoff"]
//! );
//! ```
//!
//! The servers run as separate processes (the fork server must never fork the test
//! harness), and learn nothing from the tests but bytes on a socket and signals.
#![deny(missing_docs)]

pub mod checks;
pub mod client;
pub mod memory;
pub mod server;
pub mod udp;

pub use server::Server;

/// What a server's defining property is, for the concurrency check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// One connection at a time: 5 concurrent `delay:100ms` requests take at least 5 x 100 ms.
    Iterative,
    /// Overlaps waits: 5 concurrent `delay:100ms` requests finish within 2 x 100 ms.
    Concurrent,
}

/// Expands into one `#[test]` per conformance check for the server binary `$bin`.
///
/// A server that needs what the machine may refuse (io_uring) adds `skip_if: f`, with `f` a
/// `fn() -> Option<String>`: a reason makes each check pass without running, and say why on
/// stderr (Rust's test harness has no skipped state).
#[macro_export]
macro_rules! suite {
    ($bin:expr, $model:expr) => {
        $crate::suite!($bin, $model, [], skip_if: || None::<String>);
    };
    ($bin:expr, $model:expr, skip_if: $skip:expr) => {
        $crate::suite!($bin, $model, [], skip_if: $skip);
    };
    ($bin:expr, $model:expr, [$($arg:expr),* $(,)?]) => {
        $crate::suite!($bin, $model, [$($arg),*], skip_if: || None::<String>);
    };
    ($bin:expr, $model:expr, [$($arg:expr),* $(,)?], skip_if: $skip:expr) => {
        $crate::suite!(@tests $bin, $model, [$($arg),*], $skip;
            keep_alive_serves_100_sequential_requests,
            connection_close_closes,
            http10_closes_unless_keep_alive,
            pipelined_requests_are_answered_in_order,
            raw_protocol_answers_and_closes,
            delay_shows_the_model,
            cpu_workload_is_served,
            request_sent_a_byte_at_a_time_is_served,
            slow_reader_gets_every_response,
            malformed_request_gets_400_and_close,
            pipelined_requests_then_garbage_get_every_answer_then_400,
            oversized_head_gets_431_and_close,
            sigterm_answers_request_in_flight_and_exits_0,
            bad_flags_exit_2_with_one_line,
            read_timeout_answers_408_and_closes,
            idle_timeout_closes_an_idle_connection,
            slowloris_shows_the_model,
            resets_and_vanishing_clients_cost_nothing,
            half_closed_client_gets_its_answer,
            out_of_descriptors_keeps_serving_and_recovers,
            no_zombies_after_a_run,
            sigterm_under_load_answers_every_request_in_flight,
            binding_beyond_loopback_warns,
            answers_carry_date_server_and_content_type,
            the_date_moves_with_the_clock,
            request_bodies_are_read_before_the_answer,
            chunked_body_gets_501_and_a_graceful_close,
            an_error_answer_survives_input_still_arriving,
            a_slow_upload_is_not_timed_out,
            close_wins_in_a_connection_token_list,
            sigterm_at_the_cap_drains_and_exits,
            sigterm_with_clients_that_barely_read_ends_in_time,
            sigterm_mid_write_closes_after_the_answer,
            the_cap_holds_connections_back,
            a_server_that_cannot_announce_exits,
            content_length_is_digits_and_nothing_else,
            host_is_required_once_and_valid,
            methods_not_served_get_405_with_allow,
            expect_100_continue_gets_100_before_the_body,
            higher_minor_versions_are_served_and_http2_gets_505,
            a_long_target_gets_414_and_fields_fit_by_size,
            a_silent_connection_is_closed_at_the_read_timeout,
            transport_udp_is_served_or_refused,
        );
    };
    (@tests $bin:expr, $model:expr, $args:tt, $skip:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                if let Some(reason) = ($skip)() {
                    $crate::server::say_skipped(stringify!($check), &reason);
                    return;
                }
                $crate::server::set_extra_args(&$args);
                $crate::checks::$check($bin, $model);
            }
        )*
    };
}
