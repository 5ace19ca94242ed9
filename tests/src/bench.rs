//! Helpers shared by the benchmarks (`mss-bench`): the load generator and
//! the median of rounds.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::guard::output_within;

/// `smtp-source` of `msgs` messages (3 recipients, 4 KiB) over `sessions`
/// parallel sessions to `addr`; msg/s.
pub fn smtp_source(addr: &str, msgs: u64, sessions: u64) -> f64 {
    let t = Instant::now();
    let mut st = Command::new("/usr/sbin/smtp-source");
    st.args([
        "-s",
        &sessions.to_string(),
        "-m",
        &msgs.to_string(),
        "-l",
        "4096",
        "-r",
        "3",
    ])
    .args([
        "-f",
        "bench@ch-bench.mssante.fr",
        "-t",
        "rcpt@ext.test",
        addr,
    ])
    .stdout(Stdio::null());
    // Bounded: a stuck load generator fails the run instead of hanging it.
    let st = output_within(&mut st, Duration::from_secs(900))
        .expect("smtp-source (apt-get install postfix)");
    assert!(
        st.status.success(),
        "smtp-source failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    msgs as f64 / t.elapsed().as_secs_f64()
}

/// The median (sorts `v`).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
