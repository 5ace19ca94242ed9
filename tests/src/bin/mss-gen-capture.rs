//! Benchmark data generator: fills a capture store with N Echanges rows
//! spread evenly over one month, as the capture writer would (same records,
//! same store API), for `tests/bench/export.sh`.
//!
//! Usage: mss-gen-capture STORE_DIR YYYY-MM ROWS [DOMAINS] [RECIPIENTS_PER_MESSAGE]
//! Domains are `dom<i>.mssante.fr`; the matching `[operator] domains` line is
//! printed on stdout for the benchmark's configuration. The store is flushed
//! at the end, as a month-old store would be.

use std::path::PathBuf;

use mss_shared::model::{MessageRecord, Record};
use mss_shared::month::Month;
use mss_shared::store::capture::{CaptureStore, Classifier};

fn usage() -> ! {
    eprintln!("usage: mss-gen-capture STORE_DIR YYYY-MM ROWS [DOMAINS=100] [RECIPIENTS=3]");
    std::process::exit(2)
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 3 {
        usage();
    }
    let store = PathBuf::from(&a[0]);
    let month = Month::parse(&a[1]).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        usage()
    });
    let rows: u64 = a[2].parse().unwrap_or_else(|_| usage());
    let ndom: u64 = a
        .get(3)
        .map_or(Ok(100), |s| s.parse())
        .unwrap_or_else(|_| usage());
    let nrcpt: u64 = a
        .get(4)
        .map_or(Ok(3), |s| s.parse())
        .unwrap_or_else(|_| usage());
    let domains: Vec<String> = (0..ndom).map(|i| format!("dom{i}.mssante.fr")).collect();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").expect("tz");
    let cls = Classifier::new(&domains, tz.clone());
    let cap = CaptureStore::open(&store).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(3)
    });
    let start = month
        .first_day()
        .to_zoned(tz.clone())
        .expect("start")
        .timestamp()
        .as_microsecond();
    let end = month
        .next()
        .first_day()
        .to_zoned(tz)
        .expect("end")
        .timestamp()
        .as_microsecond();
    let messages = rows.div_ceil(nrcpt);
    let step = (end - start) / messages as i64;
    let mut batch = Vec::with_capacity(10_000);
    let mut written = 0u64;
    for k in 0..messages {
        let d = &domains[(k % ndom) as usize];
        let n = nrcpt.min(rows - written);
        batch.push(Record::Message(MessageRecord {
            mail_id: format!("gen.{k:010}"),
            queue_id: None,
            message_id: None,
            sender: format!("user{}@{d}", (k / ndom) % 500),
            recipients: (0..n)
                .map(|r| format!("r{}@ext{}.fr", (k + r) % 10_000, r))
                .collect(),
            size: 2_000 + (k * 7919) % 200_000,
            time_us: start + k as i64 * step,
            frontend: "proxy".into(),
        }));
        written += n;
        if batch.len() == 10_000 {
            cap.apply(&batch, &cls, false).expect("apply");
            batch.clear();
        }
    }
    cap.apply(&batch, &cls, true).expect("apply");
    // A month-old store: its rows are in SST files, not only in the WAL (an
    // unflushed WAL is replayed by every reader that opens the store).
    cap.flush().expect("flush");
    eprintln!("{written} rows, {messages} messages, {ndom} domains, month {month}");
    println!(
        "domains = [{}]",
        domains
            .iter()
            .map(|d| format!("\"{d}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
