//! Where the servers and the client run: `--cpus server=LIST,client=LIST` or `--cpus shared`.
//!
//! On a machine where the suite may use two or more cores, the default puts the client on the
//! lowest of them and every server on the others, so a busy client cannot take CPU from the
//! server it measures and the result does not depend on the scheduler's whims. A model that
//! sizes itself by its cores (tokio) sees only the server's. `shared` lets both run anywhere,
//! as before. The placement is recorded in every row (`cpus`).

use nix::sched::CpuSet;
use nix::unistd::Pid;

/// Core placement of a suite run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Client and server may run on every allowed core.
    Shared,
    /// Disjoint core lists.
    Split {
        /// Cores of the server (and its children).
        server: Vec<usize>,
        /// Cores of the client (the load engine and the hostile clients).
        client: Vec<usize>,
    },
}

impl Placement {
    /// The default for the cores this process may use: split when there are two or more.
    pub fn default_for(allowed: &[usize]) -> Placement {
        match allowed {
            [client, server @ ..] if !server.is_empty() => Placement::Split {
                server: server.to_vec(),
                client: vec![*client],
            },
            _ => Placement::Shared,
        }
    }

    /// Parses `shared` or `server=LIST,client=LIST` (LIST as taskset's: `1`, `2-5`, `0,3`),
    /// checking both lists against the allowed cores and each other.
    ///
    /// # Errors
    /// A one-line message.
    pub fn parse(text: &str, allowed: &[usize]) -> Result<Placement, String> {
        if text == "shared" {
            return Ok(Placement::Shared);
        }
        let (mut server, mut client) = (Vec::new(), Vec::new());
        let mut current: Option<&mut Vec<usize>> = None;
        for token in text.split(',') {
            let token = if let Some(list) = token.strip_prefix("server=") {
                current = Some(&mut server);
                list
            } else if let Some(list) = token.strip_prefix("client=") {
                current = Some(&mut client);
                list
            } else {
                token
            };
            let list = current.as_deref_mut().ok_or_else(|| {
                format!("--cpus: expected 'shared' or 'server=LIST,client=LIST', got '{text}'")
            })?;
            list.extend(parse_range(token)?);
        }
        if server.is_empty() || client.is_empty() {
            return Err("--cpus: both server= and client= need at least one core".into());
        }
        if let Some(bad) = server.iter().chain(&client).find(|c| !allowed.contains(c)) {
            return Err(format!(
                "--cpus: core {bad} is not one this process may use ({})",
                format_list(allowed)
            ));
        }
        if let Some(both) = server.iter().find(|c| client.contains(c)) {
            return Err(format!(
                "--cpus: core {both} is in both lists (use 'shared' to share)"
            ));
        }
        server.sort_unstable();
        server.dedup();
        client.sort_unstable();
        client.dedup();
        Ok(Placement::Split { server, client })
    }

    /// The placement a row recorded (`label`), read back without checking the cores against
    /// this machine's.
    pub fn from_label(label: &str) -> Option<Placement> {
        let cores: Vec<usize> = label
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|t| t.parse().ok())
            .collect();
        let all: Vec<usize> = (0..=cores.iter().copied().max().unwrap_or(0)).collect();
        Placement::parse(label, &all).ok()
    }

    /// As recorded in rows: `shared` or `server=1,client=0`.
    pub fn label(&self) -> String {
        match self {
            Placement::Shared => "shared".into(),
            Placement::Split { server, client } => format!(
                "server={},client={}",
                format_list(server),
                format_list(client)
            ),
        }
    }

    /// The server's cores as a set for `sched_setaffinity`, if placed.
    pub fn server_set(&self) -> Option<CpuSet> {
        match self {
            Placement::Shared => None,
            Placement::Split { server, .. } => Some(cpu_set(server)),
        }
    }

    /// Cores the servers may use.
    pub fn server_cores(&self, allowed: &[usize]) -> usize {
        match self {
            Placement::Shared => allowed.len(),
            Placement::Split { server, .. } => server.len(),
        }
    }

    /// Pins the calling thread (and the threads it starts from now on) to the client's cores.
    ///
    /// # Errors
    /// If `sched_setaffinity` fails.
    pub fn pin_client(&self) -> nix::Result<()> {
        match self {
            Placement::Shared => Ok(()),
            Placement::Split { client, .. } => {
                nix::sched::sched_setaffinity(Pid::from_raw(0), &cpu_set(client))
            }
        }
    }
}

fn cpu_set(cores: &[usize]) -> CpuSet {
    let mut set = CpuSet::new();
    for &c in cores {
        let _ = set.set(c);
    }
    set
}

fn parse_range(token: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("--cpus: '{token}' is not a core number or range (like 2 or 2-5)");
    let number = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
    match token.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err(bad());
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![number(token)?]),
    }
}

/// `0-3,5` style.
pub fn format_list(cores: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cores.len() {
        let mut j = i;
        while j + 1 < cores.len() && cores[j + 1] == cores[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", cores[i], cores[j])
        } else {
            cores[i].to_string()
        });
        i = j + 1;
    }
    parts.join(",")
}

/// The cores this process may run on.
pub fn allowed_cores() -> Vec<usize> {
    match nix::sched::sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_splits_two_or_more_cores() {
        assert_eq!(Placement::default_for(&[0]), Placement::Shared);
        let split = Placement::default_for(&[0, 1]);
        assert_eq!(split.label(), "server=1,client=0");
        assert_eq!(
            Placement::default_for(&[2, 3, 4, 5]).label(),
            "server=3-5,client=2"
        );
    }

    #[test]
    fn lists_parse_and_bad_ones_are_refused() {
        let allowed: Vec<usize> = (0..8).collect();
        let p = Placement::parse("server=1-3,5,client=0", &allowed).unwrap();
        assert_eq!(
            p,
            Placement::Split {
                server: vec![1, 2, 3, 5],
                client: vec![0]
            }
        );
        assert_eq!(p.label(), "server=1-3,5,client=0");
        assert_eq!(p.server_cores(&allowed), 4);
        assert_eq!(Placement::Shared.server_cores(&allowed), 8);
        assert_eq!(Placement::parse("shared", &allowed), Ok(Placement::Shared));
        for bad in [
            "server=1",
            "client=0",
            "1,2",
            "server=1,client=1",
            "server=9,client=0",
            "server=3-1,client=0",
            "server=x,client=0",
        ] {
            assert!(Placement::parse(bad, &allowed).is_err(), "{bad}");
        }
    }
}
