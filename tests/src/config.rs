//! Test configurations, built from the `Config` types and written as TOML by
//! `Config::to_toml` — never formatted by hand. Every end-to-end test starts
//! from [`TestConfig::new`].

use std::path::Path;

use mss_shared::config::{
    Config, Events, Export, Metrics, Milter, Operator, Proxy, Service, Store,
};

use crate::sidecar::DOMAIN;

/// A configuration under construction.
pub struct TestConfig(Config);

impl TestConfig {
    /// Operator domains [`DOMAIN`] and `ch-autre.mssante.fr`, node `t1`,
    /// both stores under `dir`, a 500 ms commit wait; the daemon keeps root
    /// (the tests' stores live in root's temporary directories).
    pub fn new(dir: &Path) -> TestConfig {
        let mut operator = Operator::new(&[DOMAIN, "ch-autre.mssante.fr"]);
        operator.node = "t1".into();
        TestConfig(Config {
            operator,
            store: Store {
                capture_path: dir.join("capture"),
                registry_path: dir.join("registry"),
                commit_timeout_ms: 500,
                ..Store::default()
            },
            proxy: None,
            milter: None,
            events: None,
            metrics: None,
            export: Export::default(),
            sipil: None,
            policy: None,
            service: Service {
                user: "root".into(),
                // No marks in the host's mail log; tests that read them ask.
                mail_log_marks: false,
                ..Service::default()
            },
            coverage: Default::default(),
            report: Default::default(),
            central: None,
        })
    }

    /// The proxy on `listen` in front of `upstream` (`proxy.test` in its own
    /// replies, 20 s timeouts, 5 s shutdown grace).
    pub fn proxy(mut self, listen: &str, upstream: &str) -> TestConfig {
        let mut p = Proxy::new(listen, upstream);
        p.hostname = "proxy.test".into();
        p.upstream_timeout_secs = 20;
        p.client_timeout_secs = 20;
        p.shutdown_grace_secs = 5;
        self.0.proxy = Some(p);
        self
    }

    /// The milter front end on `listen` (`host:port` or `unix:/path`).
    pub fn milter(mut self, listen: &str) -> TestConfig {
        self.0.milter = Some(Milter {
            listen: listen.into(),
        });
        self
    }

    /// The login events HTTP endpoint on `listen`.
    pub fn events(mut self, listen: &str) -> TestConfig {
        self.0.events = Some(Events {
            listen: Some(listen.into()),
            dict_socket: None,
            token_file: None,
            token: None,
        });
        self
    }

    /// `/metrics` on `listen`.
    pub fn metrics(mut self, listen: &str) -> TestConfig {
        self.0.metrics = Some(Metrics {
            listen: listen.into(),
            token_file: None,
            token: None,
        });
        self
    }

    /// Any other change, on the typed configuration.
    pub fn with(mut self, f: impl FnOnce(&mut Config)) -> TestConfig {
        f(&mut self.0);
        self
    }

    pub fn config(self) -> Config {
        self.0
    }

    /// The TOML text (what `config.toml` holds).
    pub fn text(&self) -> String {
        self.0.to_toml()
    }

    /// [`TestConfig::text`] with `keys` (TOML `key = value` lines, as a
    /// test varies them) added to `[section]`, created if absent.
    pub fn text_with(&self, section: &str, keys: &str) -> String {
        if keys.trim().is_empty() {
            return self.text();
        }
        let mut t: toml::Table = toml::from_str(&self.text()).expect("our own TOML");
        let keys: toml::Table = toml::from_str(keys).expect("TOML keys");
        t.entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a section")
            .extend(keys);
        toml::to_string(&t).expect("TOML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reads_back_as_the_same_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let t = TestConfig::new(dir.path())
            .proxy("127.0.0.1:0", "127.0.0.1:25")
            .metrics("127.0.0.1:9100");
        let text = t.text_with("proxy", "max_recipients = 3\n");
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.proxy.as_ref().unwrap().max_recipients, 3);
        assert_eq!(c.to_toml(), Config::parse(&c.to_toml()).unwrap().to_toml());
        // Sections at their defaults are not written: a test may add them.
        assert!(
            !text.contains("[export]") && !text.contains("[coverage]"),
            "{text}"
        );
        eprintln!("{text}");
    }
}
