//! Finding the primary among the database URL's hosts.
//!
//! A URL may name several servers (`postgres://u@db-a:5432,db-b:5432/ticketd`), as libpq reads
//! it: a primary and its standbys, any of which may be the primary after a failover. Every new
//! connection goes to the first of them that takes writes; ticketd always asks for that
//! (`target_session_attrs=read-write`, whatever the URL says), since each of its connections may
//! carry a batch, so a standby or a server turned read-only is passed over when connecting
//! instead of refusing the first write.
//!
//! tokio-postgres tries the hosts in turn, but bounds only each TCP connect: a host that accepts
//! connections and then never answers (a hung server, a stopped postmaster, a machine that froze
//! with its kernel still up) holds the whole attempt until the pool's limit ends it, every time,
//! and the hosts after it are never tried. So each host is tried here on its own, within its
//! share of the limit, starting with the one that took the last connection: after a failover the
//! dead primary costs at most one share, once, and then the new primary is found first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool_postgres::Connect;
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::{Client, Config, NoTls};

/// Connects to the URL's hosts one at a time (see the module's notes).
pub(super) struct Primary {
    /// One configuration per host, in the URL's order; one for all of them when the URL names
    /// its hosts in a way this does not split (see [`one_per_host`]).
    hosts: Vec<Config>,
    /// Index in `hosts` of the one that took the last connection: tried first.
    last: AtomicUsize,
    /// How long each host is given.
    share: Duration,
}

impl Primary {
    /// `config` is `url` as parsed; `limit` is the longest a whole connection attempt may take.
    pub(super) fn new(url: &str, config: &Config, limit: Duration) -> Self {
        let mut hosts = one_per_host(url, config).unwrap_or_else(|| vec![config.clone()]);
        let count = u32::try_from(hosts.len()).unwrap_or(u32::MAX).max(1);
        let share = limit / count;
        for host in &mut hosts {
            // What the caller set beyond the URL.
            if let Some(name) = config.get_application_name() {
                host.application_name(name);
            }
            host.target_session_attrs(TargetSessionAttrs::ReadWrite);
            host.connect_timeout(share);
        }
        Self {
            hosts,
            last: AtomicUsize::new(0),
            share,
        }
    }

    /// How many hosts are tried one by one.
    #[cfg(test)]
    pub(super) fn hosts(&self) -> usize {
        self.hosts.len()
    }
}

impl Connect for Primary {
    fn connect(
        &self,
        _: &Config,
    ) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        Box::pin(async move {
            let count = self.hosts.len();
            let first = self.last.load(Ordering::Relaxed);
            let mut refused = None;
            for index in (0..count).map(|n| (first + n) % count) {
                match tokio::time::timeout(self.share, self.hosts[index].connect(NoTls)).await {
                    Ok(Ok((client, connection))) => {
                        self.last.store(index, Ordering::Relaxed);
                        let driver = tokio::spawn(async move {
                            if let Err(error) = connection.await {
                                tracing::warn!("a database connection ended: {error}");
                            }
                        });
                        return Ok((client, driver));
                    }
                    Ok(Err(error)) => refused = Some(error),
                    // No answer within its share: on to the next.
                    Err(_) => {}
                }
            }
            match refused {
                Some(error) => Err(error),
                // Every host used its whole share, so the pool's own limit (their sum) is up
                // and ends this attempt as a timeout.
                None => std::future::pending().await,
            }
        })
    }
}

/// `url` as one URL per host, each parsed, when they say exactly what `config` (all of `url`)
/// says host by host; `None` for a URL with one host, or whose hosts this cannot split (hosts
/// or ports given as query parameters, `hostaddr`): tokio-postgres then tries them itself.
fn one_per_host(url: &str, config: &Config) -> Option<Vec<Config>> {
    if config.get_hosts().len() < 2 || !config.get_hostaddrs().is_empty() {
        return None;
    }
    // As tokio-postgres reads a URL: credentials up to the first '@', then the hosts up to the
    // first '/' or '?'.
    let (scheme, rest) = url.split_once("://")?;
    let (credentials, rest) = match rest.split_once('@') {
        Some((credentials, rest)) => (format!("{credentials}@"), rest),
        None => (String::new(), rest),
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hosts, tail) = rest.split_at(end);
    let configs: Vec<Config> = hosts
        .split(',')
        .map(|host| format!("{scheme}://{credentials}{host}{tail}").parse().ok())
        .collect::<Option<_>>()?;
    let ports = config.get_ports();
    let same = configs.len() == config.get_hosts().len()
        && configs.iter().enumerate().all(|(index, one)| {
            one.get_hosts() == [config.get_hosts()[index].clone()]
                && one.get_ports() == [ports.get(index).or(ports.first()).copied().unwrap_or(5432)]
                && one.get_hostaddrs().is_empty()
        });
    same.then_some(configs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::Host;

    fn split(url: &str) -> Option<Vec<(String, u16)>> {
        let config: Config = url.parse().unwrap();
        let hosts = one_per_host(url, &config)?;
        Some(
            hosts
                .iter()
                .map(|one| {
                    let Host::Tcp(host) = &one.get_hosts()[0] else {
                        panic!("a TCP host")
                    };
                    assert_eq!(one.get_user(), config.get_user());
                    assert_eq!(one.get_password(), config.get_password());
                    assert_eq!(one.get_dbname(), config.get_dbname());
                    assert_eq!(one.get_options(), config.get_options());
                    (host.clone(), one.get_ports()[0])
                })
                .collect(),
        )
    }

    #[test]
    fn a_url_with_several_hosts_is_tried_host_by_host_with_everything_else_kept() {
        let hosts = split(
            "postgres://ticketd:p%40ss@db-a:5433,db-b,[::1]:5434/ticketd\
             ?target_session_attrs=read-write&options=-c%20search_path%3Dticketd",
        );
        assert_eq!(
            hosts.unwrap(),
            [
                ("db-a".to_owned(), 5433),
                ("db-b".to_owned(), 5432),
                ("::1".to_owned(), 5434)
            ]
        );
        assert_eq!(
            split("postgresql://db-a:1,db-b:2").unwrap(),
            [("db-a".to_owned(), 1), ("db-b".to_owned(), 2)]
        );
    }

    #[test]
    fn urls_this_cannot_split_are_left_to_the_driver() {
        // One host: nothing to split.
        assert_eq!(split("postgres://u@db-a:5432/ticketd"), None);
        // Hosts in the query: the authority does not name them.
        assert_eq!(split("postgres:///ticketd?host=db-a,db-b&port=1,2"), None);
        // Addresses given apart from the names.
        assert_eq!(
            split("postgres://u@db-a,db-b/ticketd?hostaddr=127.0.0.1,127.0.0.2"),
            None
        );
        // Several ports in the query for hosts in the authority: each URL alone would not parse
        // as the whole does.
        assert_eq!(split("postgres://u@db-a,db-b/ticketd?port=1,2"), None);
    }

    #[test]
    fn every_host_is_asked_to_take_writes_within_its_share() {
        let url = "postgres://u@db-a,db-b/ticketd?target_session_attrs=any";
        let primary = Primary::new(url, &url.parse().unwrap(), Duration::from_millis(900));
        assert_eq!(primary.hosts(), 2);
        for host in &primary.hosts {
            assert_eq!(
                host.get_target_session_attrs(),
                TargetSessionAttrs::ReadWrite
            );
            assert_eq!(
                host.get_connect_timeout(),
                Some(&Duration::from_millis(450))
            );
        }
        // One host: it alone, and the whole limit.
        let url = "postgres://u@db-a/ticketd";
        let primary = Primary::new(url, &url.parse().unwrap(), Duration::from_millis(900));
        assert_eq!(primary.hosts(), 1);
        assert_eq!(
            primary.hosts[0].get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
    }
}
