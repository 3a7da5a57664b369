//! `[backplane]` in the TOML file, and `--backplane` (docs/scaling.md §2).

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach the NATS cluster and which bucket holds the keys.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BackplaneConfig {
    /// NATS server URLs, e.g. `nats://10.0.0.2:4222`; any of them will do,
    /// the client learns the rest of the cluster from it.
    pub servers: Vec<String>,
    /// The key-value bucket (JetStream stream `KV_<bucket>`).
    pub bucket: String,
    /// Replicas of the bucket, used when this server creates it.
    pub replicas: usize,
    /// A NATS token.
    pub token: Option<String>,
    /// A NATS user (with `password`).
    pub user: Option<String>,
    /// The NATS user's password.
    pub password: Option<String>,
    /// TLS (a `tls://` URL, or a NATS server that requires it): the PEM
    /// file of the CA that signed the NATS servers' certificates, beside
    /// the system's.
    pub tls_ca: Option<PathBuf>,
    /// TLS: this server's certificate (PEM), for NATS servers that verify
    /// their clients (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// TLS: the key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// A write without the bucket's answer by then fails with `unavailable`.
    pub write_timeout_ms: u64,
    /// How long a dead server's ephemeral keys outlive it (its lease). It
    /// must outlast a NATS leader election plus a write timeout (about 10 s
    /// with the defaults), or a failover would take the ephemeral keys of
    /// live servers.
    pub lease_ttl_ms: u64,
}

impl Default for BackplaneConfig {
    fn default() -> Self {
        BackplaneConfig {
            servers: Vec::new(),
            bucket: "ipcbus".to_owned(),
            replicas: 3,
            token: None,
            user: None,
            password: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            write_timeout_ms: 5_000,
            lease_ttl_ms: 30_000,
        }
    }
}

impl BackplaneConfig {
    /// The settings with `servers` from a comma-separated list, as
    /// `--backplane` and `IPCBUS_BACKPLANE` give them.
    pub fn with_servers(mut self, list: &str) -> BackplaneConfig {
        self.servers = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        self
    }

    /// What is wrong with these settings, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err(
                "backplane: no NATS server given (servers = [\"nats://host:4222\"])".into(),
            );
        }
        if let Some(bad) = self
            .servers
            .iter()
            .find(|s| s.parse::<async_nats::ServerAddr>().is_err())
        {
            return Err(format!(
                "backplane: {bad:?} is not a NATS URL (nats://host:port)"
            ));
        }
        let valid = !self.bucket.is_empty()
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(format!(
                "backplane: bucket {:?} may hold only letters, digits, '_' and '-'",
                self.bucket
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(format!(
                "backplane: replicas must be 1 to 5, not {}",
                self.replicas
            ));
        }
        if self.lease_ttl_ms < 1_000 {
            return Err(
                "backplane: lease_ttl_ms must be at least 1000 (NATS's smallest TTL)".into(),
            );
        }
        if self.write_timeout_ms == 0 {
            return Err("backplane: write_timeout_ms must be greater than 0".into());
        }
        if self.user.is_some() != self.password.is_some() {
            return Err("backplane: user and password go together".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("backplane: tls_cert and tls_key go together".into());
        }
        let files = [&self.tls_ca, &self.tls_cert, &self.tls_key];
        if let Some(missing) = files.into_iter().flatten().find(|f| !f.is_file()) {
            return Err(format!(
                "backplane: {} does not exist or is not a file",
                missing.display()
            ));
        }
        Ok(())
    }

    /// [`Self::write_timeout_ms`] as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// [`Self::lease_ttl_ms`] as a duration.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_gives_servers_and_the_rest_defaults() {
        let c = BackplaneConfig::default().with_servers("nats://a:4222, nats://b:4222,");
        assert_eq!(c.servers, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!((c.bucket.as_str(), c.replicas), ("ipcbus", 3));
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let ok = BackplaneConfig::default().with_servers("nats://a:4222");
        let cases = [
            (BackplaneConfig::default(), "no NATS server"),
            (
                BackplaneConfig {
                    bucket: "a.b".into(),
                    ..ok.clone()
                },
                "bucket",
            ),
            (
                BackplaneConfig {
                    replicas: 0,
                    ..ok.clone()
                },
                "replicas",
            ),
            (
                BackplaneConfig {
                    lease_ttl_ms: 500,
                    ..ok.clone()
                },
                "lease_ttl_ms",
            ),
            (
                BackplaneConfig {
                    user: Some("u".into()),
                    ..ok.clone()
                },
                "user and password",
            ),
            (
                BackplaneConfig {
                    tls_cert: Some("/".into()),
                    ..ok.clone()
                },
                "tls_cert and tls_key",
            ),
            (
                BackplaneConfig {
                    tls_ca: Some("/no/such/ca.pem".into()),
                    ..ok
                },
                "/no/such/ca.pem does not exist",
            ),
        ];
        for (config, says) in cases {
            let e = config.check().expect_err(says);
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn the_toml_section_reads_and_refuses_unknown_keys() {
        let c: BackplaneConfig =
            toml::from_str("servers = [\"nats://a:4222\"]\nbucket = \"home\"\nreplicas = 1")
                .expect("toml");
        assert_eq!(
            (c.bucket.as_str(), c.replicas, c.write_timeout_ms),
            ("home", 1, 5_000)
        );
        assert!(toml::from_str::<BackplaneConfig>("bukket = \"x\"").is_err());
    }
}
