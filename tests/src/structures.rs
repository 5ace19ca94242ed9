//! Support for `tests/tests/report.rs`: the tools run, the month's files
//! read, one structure's figures computed from the ANS files alone, and the
//! daemon's `/metrics` checked against README.md and the Grafana dashboard.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mss_shared::month::Month;
use serde_json::{json, Value};

use crate::daemon::Daemon;
use crate::guard::output_within;
use crate::postfix::Postfix;
use crate::sidecar::{bin, rows, DOMAIN};

pub const LISTED: &str = "listed.mssante.fr";
pub const EG: &str = "750000001";
pub const EJ: &str = "690000002";
pub const FROM: &str = "statistiques@operateur.example";

pub fn run(tool: &str, cfg: &Path, args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let mut c = Command::new(bin(tool));
    c.arg("--config").arg(cfg).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = output_within(&mut c, Duration::from_secs(120)).unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

pub fn admin_ok(cfg: &Path, args: &[&str]) -> String {
    let (c, out, err) = run("mss-admin", cfg, args, &[]);
    assert_eq!(c, 0, "mss-admin {args:?}: {err}");
    out
}

pub fn http_get_or_post(addr: &str, req: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    r
}

pub fn post_login(addr: &str, bal: &str, time: jiff::Timestamp) {
    let body = format!(r#"{{"bal": "{bal}", "time": "{time}", "service": "imap"}}"#);
    let r = http_get_or_post(
        addr,
        &format!(
            "POST /v1/logins HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

pub fn send(pf: &Postfix, from: &str, to: &[&str]) {
    let r = crate::swaks::send(&pf.addr(), from, to, &[]);
    assert!(r.ok, "{}", r.transcript);
}

pub fn stop(mut d: Daemon) {
    let _ = Command::new("kill").arg(d.pid().to_string()).status();
    let _ = crate::guard::wait_within(&mut d.child, Duration::from_secs(20));
}

pub fn wait_rows(dir: &Path, n: usize, pf: &Postfix) {
    for _ in 0..400 {
        if rows(dir).len() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} rows, want {n}\n{}", rows(dir).len(), pf.log());
}

/// Per sender: its MAIL_IDs, rows and bytes.
pub type BalSent = (BTreeSet<String>, u64, u64);

/// One Echanges row of the ANS file.
pub struct FileRow {
    mail_id: String,
    sender: String,
    recipient: String,
    date: String,
    size: u64,
}

pub fn read_zip(path: &str) -> BTreeMap<String, String> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        out.insert(f.name().unwrap().to_string(), s);
    }
    out
}

/// The figures of one structure, from the ANS files alone.
pub fn expected(
    files: &BTreeMap<String, String>,
    month: Month,
    bals: &[(&str, &str)],
    kinds: &BTreeMap<String, &str>,
) -> Value {
    let m = month.compact();
    let ech = &files[&format!("{m}_EchangesMSSante_{DOMAIN}.csv")];
    let con = &files[&format!("{m}_ConnexionsMSSante_{DOMAIN}.csv")];
    let mine: BTreeSet<String> = bals.iter().map(|(b, _)| format!("{b}@{DOMAIN}")).collect();
    let rows: Vec<FileRow> = ech
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(';').collect();
            FileRow {
                mail_id: f[0].into(),
                sender: f[1].into(),
                recipient: f[2].into(),
                date: f[3].into(),
                size: f[4].parse().unwrap(),
            }
        })
        .filter(|r| mine.contains(&r.sender))
        .collect();
    let mut ids = BTreeMap::new();
    for r in &rows {
        ids.insert(r.mail_id.clone(), (r.sender.clone(), r.size));
    }
    let bytes: u64 = ids.values().map(|(_, s)| s).sum();
    let mut days: BTreeMap<String, (BTreeSet<String>, u64)> = BTreeMap::new();
    let mut per_bal: BTreeMap<String, BalSent> = BTreeMap::new();
    let inside = rows
        .iter()
        .filter(|r| r.recipient.ends_with(&format!("@{DOMAIN}")) || r.recipient.ends_with(LISTED))
        .count() as u64;
    for r in &rows {
        let d = days.entry(r.date[..10].to_string()).or_default();
        d.0.insert(r.mail_id.clone());
        d.1 += 1;
        let b = per_bal.entry(r.sender.clone()).or_default();
        if b.0.insert(r.mail_id.clone()) {
            b.2 += r.size;
        }
        b.1 += 1;
    }
    let lines: Vec<(String, String)> = con
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(';'))
        .filter(|(b, _)| mine.contains(*b))
        .map(|(b, d)| (b.to_string(), d.to_string()))
        .collect();
    let kind = |b: &str| kinds[b];
    let (mut by_type, mut sent_type) = (vec![], vec![]);
    for k in [
        "personnelle",
        "organisationnelle",
        "applicative",
        "undeclared",
    ] {
        let included = lines.iter().filter(|(b, _)| kind(b) == k).count();
        let excluded = bals
            .iter()
            .filter(|(b, why)| !why.is_empty() && kind(&format!("{b}@{DOMAIN}")) == k)
            .count();
        by_type.push(json!({"type": k, "included": included, "excluded": excluded}));
        let of: Vec<&BalSent> = per_bal
            .iter()
            .filter(|(b, _)| kind(b) == k)
            .map(|(_, v)| v)
            .collect();
        sent_type.push(json!({"type": k,
            "messages": of.iter().map(|v| v.0.len() as u64).sum::<u64>(),
            "rows": of.iter().map(|v| v.1).sum::<u64>(),
            "bytes": of.iter().map(|v| v.2).sum::<u64>()}));
    }
    let mut top: Vec<(&String, &BalSent)> = per_bal.iter().collect();
    top.sort_by(|a, b| {
        (b.1 .1, b.1 .0.len())
            .cmp(&(a.1 .1, a.1 .0.len()))
            .then(a.0.cmp(b.0))
    });
    let all_days: Vec<Value> = {
        let (mut d, end) = (month.first_day(), month.next().first_day());
        let mut v = vec![];
        while d < end {
            let (msgs, rows) = days
                .get(&d.to_string())
                .map_or((0, 0), |x| (x.0.len() as u64, x.1));
            v.push(json!({"day": d.to_string(), "messages": msgs, "rows": rows}));
            d = d.tomorrow().unwrap();
        }
        v
    };
    json!({
        "by_type": by_type,
        "messages": ids.len(),
        "rows": rows.len(),
        "bytes": bytes,
        "sent_by_type": sent_type,
        "days": all_days,
        "top": top.iter().map(|(b, v)| json!({"bal": b, "type": kind(b), "messages": v.0.len(), "rows": v.1, "bytes": v.2})).collect::<Vec<_>>(),
        "trust_space": {"inside": inside, "outside": rows.len() as u64 - inside},
        "lines": lines,
    })
}

/// `/metrics` of the running daemon at `addr`, parsed as Prometheus does:
/// every metric README.md documents and the dashboard uses is there, labels
/// well-formed, and the figures of this test's month.
pub fn check_metrics(addr: &str, month: &str) {
    let names = dashboard_metrics();
    let mut scraped = String::new();
    for _ in 0..200 {
        scraped = http_get_or_post(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if scraped.contains("mss_export_state{") && scraped.contains("mss_domain_logins_total{") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let samples = sample_names(&scraped);
    // Parsed as Prometheus does: every metric README.md documents is there,
    // every label well-formed.
    let body = scraped
        .split_once("\r\n\r\n")
        .map_or(scraped.as_str(), |(_, b)| b);
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let parsed_names: BTreeSet<&str> = parsed.samples.iter().map(|s| s.metric.as_str()).collect();
    for doc in documented_metrics() {
        assert!(
            samples.contains(&doc),
            "{doc} (README.md) is not on /metrics:\n{scraped}"
        );
    }
    for s in &parsed.samples {
        for (k, v) in s.labels.iter() {
            assert!(
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{s:?}"
            );
            assert!(!v.is_empty() && !v.contains('"'), "{s:?}");
        }
    }
    assert!(
        parsed_names.contains("mss_transactions_total"),
        "{parsed_names:?}"
    );
    let missing: Vec<&String> = names.iter().filter(|n| !samples.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "dashboard metrics missing from /metrics: {missing:?}\n{scraped}"
    );
    assert!(
        scraped.contains(&format!(
            "mss_export_state{{month=\"{month}\",state=\"accepted\"}} 1\n"
        )),
        "{scraped}"
    );
    assert!(
        scraped.contains(&format!(
            "mss_domain_messages_total{{frontend=\"milter\",domain=\"{DOMAIN}\"}} 1\n"
        )),
        "{scraped}"
    );
    assert!(
        scraped.contains(&format!(
            "mss_domain_logins_total{{domain=\"{DOMAIN}\"}} 1\n"
        )),
        "{scraped}"
    );
    let days = scraped
        .lines()
        .find_map(|l| l.strip_prefix("mss_client_certificate_expiry_days "))
        .unwrap();
    assert!(days.parse::<i64>().unwrap() > 30, "{days}");
}

/// The metric names of README.md's metrics table (`| \`mss_…\` |` lines).
pub fn documented_metrics() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let out: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `mss_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("mss_{n}"))
        .collect();
    assert!(out.len() >= 20, "{out:?}");
    out
}

/// Every metric name in the dashboard's expressions.
pub fn dashboard_metrics() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/grafana/mss-sidecar.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = BTreeSet::new();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            let mut rest = e;
            while let Some(i) = rest.find("mss_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                out.insert(name);
            }
        }
    }
    assert!(out.len() >= 15, "{out:?}");
    out
}

/// The metric names of a Prometheus text exposition (`# TYPE` and
/// samples), each line checked:
/// `# HELP`/`# TYPE` comments, or `name{labels} value` with well-formed
/// labels and a number.
pub fn sample_names(text: &str) -> BTreeSet<String> {
    let body = text.split_once("\r\n\r\n").map_or(text, |(_, b)| b);
    let mut out = BTreeSet::new();
    for l in body.lines().filter(|l| !l.is_empty()) {
        if let Some(t) = l.strip_prefix("# TYPE ") {
            // OpenMetrics: a family's samples carry the suffixes of its type.
            let (name, kind) = t.split_once(' ').unwrap_or((t, ""));
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["", "_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for x in suffixes {
                out.insert(format!("{name}{x}"));
            }
            continue;
        }
        if l.starts_with("# HELP ") || l.starts_with("# UNIT ") || l == "# EOF" {
            continue;
        }
        let (series, value) = l
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {l:?}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {l:?}");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (
                n,
                Some(
                    rest.strip_suffix('}')
                        .unwrap_or_else(|| panic!("bad labels {l:?}")),
                ),
            ),
            None => (series, None),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name {l:?}"
        );
        if let Some(labels) = labels {
            for kv in labels.split("\",").filter(|s| !s.is_empty()) {
                let (k, v) = kv
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label {kv:?} in {l:?}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name in {l:?}"
                );
                assert!(
                    !v.trim_end_matches('"').contains('"'),
                    "bad label value in {l:?}"
                );
            }
        }
        out.insert(name.to_string());
    }
    out
}
