// Minimal reproducer of the rustc 1.95 miscompile behind the mss-bench "double free"
// (docs/reliability.md, "rustc miscompile"). Mirrors tests/src/bin/mss-bench.rs `tune` and
// tests/src/postfix.rs `main_cf` as they were at commit 2e175f8. No unsafe, no dependency.
//   rustc -C opt-level=2 -o /tmp/r docs/rustc-155241-repro.rs && /tmp/r   -> free(): double free, exit 134
//   rustc -C opt-level=1 -o /tmp/r docs/rustc-155241-repro.rs && /tmp/r   -> "193 258", exit 0
pub struct Builder {
    main: Vec<String>,
    master: Vec<String>,
    port: Option<u16>,
}

impl Builder {
    pub fn new() -> Self {
        Builder { main: Vec::new(), master: Vec::new(), port: None }
    }
    pub fn main_cf(mut self, line: &str) -> Self {
        self.main.push(line.to_string());
        self
    }
    pub fn finish(self) -> usize {
        self.main.iter().map(|s| s.len()).sum::<usize>() + self.master.len() + self.port.map_or(0, usize::from)
    }
}

fn main() {
    let tune = |b: Builder| {
        b.main_cf("default_process_limit = 200")
            .main_cf("smtpd_client_connection_count_limit = 0")
            .main_cf("smtpd_client_connection_rate_limit = 0")
            .main_cf("smtpd_client_message_rate_limit = 0")
            .main_cf("smtpd_client_recipient_rate_limit = 0")
            .main_cf("in_flow_delay = 0")
    };
    let plain = tune(Builder::new()).finish();
    let with = tune(Builder::new())
        .main_cf(&format!("smtpd_milters = inet:127.0.0.1:{}", 1234))
        .main_cf("milter_default_action = accept")
        .finish();
    println!("{plain} {with}");
}
