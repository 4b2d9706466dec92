//! The flags every server shares, and how usage errors are reported.
//!
//! Every server binary flattens [`ServerArgs`] into its own clap parser and adds only what its
//! model needs (`--workers` for the pools and tokio). [`parse`] turns a usage error into one line
//! on stderr and exit code 2, the same for every binary in the workspace.

use std::net::SocketAddr;
use std::time::Duration;

use clap::error::ErrorKind;

use crate::http::Headers;
use crate::workload::Workload;

/// Which protocol a server speaks on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive, `Connection: close`, HTTP/1.0 and pipelining.
    Http,
    /// The paper's protocol: on connect, do the workload, write `HelloWorld\n`, close.
    Raw,
}

/// Which transport a server listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// TCP: connections, and the protocol of `--protocol` on each.
    Tcp,
    /// UDP: a datagram in, `HelloWorld\n` out (the raw protocol without a connection). Only
    /// the iterative and epoll servers serve it; the others exit 2 ([`crate::udp`] says why).
    Udp,
}

/// The flags every server takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address to bind. Loopback by default; port 0 picks a free port, which the ready line
    /// `listening on ADDR` reports.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,

    /// What each request costs: `hello`, `delay:D` (wait D, e.g. delay:100ms) or `cpu:D`
    /// (burn D of CPU, e.g. cpu:200us).
    #[arg(long, default_value = "hello")]
    pub workload: Workload,

    /// Protocol spoken on each connection.
    #[arg(long, value_enum, default_value_t = Protocol::Http)]
    pub protocol: Protocol,

    /// `tcp`, or `udp`: a datagram in, `HelloWorld\n` out (server-iterative and server-epoll
    /// only; `--protocol` is then ignored).
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,

    /// Most connections served at once: children (fork), threads (threads), open connections
    /// (event loops). Past it the server stops accepting and new clients wait in the backlog.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns: u32,

    /// Also set SO_REUSEPORT on the listener.
    #[arg(long)]
    pub reuseport: bool,

    /// Time a client has to send a whole request head once its first byte arrived; then the
    /// connection is closed (slowloris guard). Also how long a write may stall.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub read_timeout: Duration,

    /// Time a keep-alive connection may sit idle between requests before it is closed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Response headers: `standard` (Server, Date, Content-Type, Content-Length, as RFC 9110
    /// asks and nginx sends) or `minimal` (Content-Length and Connection only: the fewest bytes
    /// HTTP/1.1 allows, for measuring what the standard headers cost).
    #[arg(long, value_enum, default_value_t = Headers::Standard)]
    pub headers: Headers,
}

/// What the connection loops need to know, copied out of [`ServerArgs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// What each request costs.
    pub workload: Workload,
    /// Protocol spoken on each connection.
    pub protocol: Protocol,
    /// Time allowed for a request head, counted from its first byte.
    pub read_timeout: Duration,
    /// Time a keep-alive connection may sit idle.
    pub idle_timeout: Duration,
    /// Which response headers to send.
    pub headers: Headers,
}

impl ServerArgs {
    /// The part of the flags the connection loops use.
    pub fn config(&self) -> ServerConfig {
        ServerConfig {
            workload: self.workload,
            protocol: self.protocol,
            read_timeout: self.read_timeout,
            idle_timeout: self.idle_timeout,
            headers: self.headers,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            workload: Workload::Hello,
            protocol: Protocol::Http,
            read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            headers: Headers::Standard,
        }
    }
}

/// Parses the command line into `T`. `--help` and `--version` print and exit 0; any usage error
/// prints one line (`error: ...`) on stderr and exits with code 2.
pub fn parse<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) => exit_usage(e),
    }
}

/// Reports a clap error the archbench way (see [`parse`]) and exits.
pub fn exit_usage(e: clap::Error) -> ! {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            let rendered = e.render().to_string();
            let line = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: bad usage");
            eprintln!("{} (see --help)", line.trim_end());
            std::process::exit(2);
        }
    }
}

/// Parses a duration with a unit: `250us`, `100ms`, `1.5s`, `2m` (also `ns`, `µs`, `h`).
///
/// # Errors
/// A missing number, a missing or unknown unit, a negative value, or one over an hour.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_duration_up_to(text, Duration::from_secs(3600))
}

/// [`parse_duration`] with another upper bound (a load generator's soak run lasts days).
///
/// # Errors
/// A missing number, a missing or unknown unit, a negative value, or one over `max`.
pub fn parse_duration_up_to(text: &str, max: Duration) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("'{text}' has no unit (use ns, us, ms, s, m or h)"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' does not start with a number"))?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "'{text}' has unknown unit '{unit}' (use ns, us, ms, s, m or h)"
            ))
        }
    };
    let secs = value * scale;
    if !(0.0..=max.as_secs_f64()).contains(&secs) {
        let hours = max.as_secs_f64() / 3600.0;
        let bound = if hours == 1.0 {
            "1 hour".to_string()
        } else {
            format!("{hours} hours")
        };
        return Err(format!("'{text}' is out of range (0 to {bound})"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_without_unit_or_number_are_refused() {
        assert!(parse_duration("100").unwrap_err().contains("no unit"));
        assert!(parse_duration("ms").unwrap_err().contains("number"));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("5h").unwrap_err().contains("out of range"));
        let week = Duration::from_secs(7 * 24 * 3600);
        assert_eq!(
            parse_duration_up_to("48h", week),
            Ok(Duration::from_secs(48 * 3600))
        );
        assert!(parse_duration_up_to("169h", week)
            .unwrap_err()
            .contains("0 to 168 hours"));
        assert!(parse_duration("5000s")
            .unwrap_err()
            .contains("out of range"));
    }
}
