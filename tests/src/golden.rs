//! Support for `tests/tests/export_golden.rs`: a month of crafted data in
//! real stores, the golden files of `tests/golden/`, and their comparison.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::civil::Date;
use mss_shared::model::{LoginRecord, MessageRecord, Record};
use mss_shared::store::capture::{CaptureStore, Classifier};
use mss_shared::store::registry::{BalType, Mailbox, RegistryStore, Status, StatusChange};

use crate::sidecar::bin;

pub const A: &str = "ch-a.mssante.fr";

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

pub fn us(utc: &str) -> i64 {
    utc.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{utc}: {e}"))
        .as_microsecond()
}

pub fn msg(id: &str, from: &str, to: &[&str], utc: &str, size: u64) -> Record {
    Record::Message(MessageRecord {
        mail_id: id.into(),
        queue_id: None,
        message_id: None,
        sender: from.into(),
        recipients: to.iter().map(|s| s.to_string()).collect(),
        size,
        time_us: us(utc),
        frontend: "proxy".into(),
    })
}

pub fn login(bal: &str, utc: &str, service: &str) -> Record {
    Record::Login(LoginRecord {
        bal: bal.into(),
        time_us: us(utc),
        service: service.into(),
        source: "dovecot".into(),
    })
}

pub fn d(s: &str) -> Option<Date> {
    Some(s.parse().unwrap())
}

pub fn mailbox(bal: &str, kind: BalType, history: &[(Status, Option<Date>)]) -> Mailbox {
    Mailbox {
        bal: bal.into(),
        kind,
        test: false,
        finess_ej: None,
        finess_eg: None,
        login_tracking: true,
        history: history
            .iter()
            .map(|(status, date)| StatusChange {
                recorded: None,
                status: *status,
                date: *date,
            })
            .collect(),
    }
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

pub fn setup(extra_export: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[operator]\ndomains = [\"ch-c.mssante.fr\", \"{A}\", \"ch-b.mssante.fr\"]\ntimezone = \"Europe/Paris\"\nnode = \"t1\"\n\n[store]\ncapture_path = \"{}\"\nregistry_path = \"{}\"\nretention_months = 240\n\n[export]\nout_dir = \"{}\"\n{extra_export}\n\n[coverage]\nlogins_since = \"2026-01-01\"\n",
            dir.path().join("capture").display(),
            dir.path().join("registry").display(),
            dir.path().join("exports").display(),
        ),
    )
    .unwrap();
    let cls = Classifier::new(
        &[A.into(), "ch-b.mssante.fr".into(), "ch-c.mssante.fr".into()],
        jiff::tz::TimeZone::get("Europe/Paris").unwrap(),
    );
    let a = |l: &str| format!("{l}@{A}");
    let cap = CaptureStore::open(&dir.path().join("capture")).unwrap();
    let records = vec![
        // 2026-03-01 00:30 in Paris: March.
        msg(
            "t1.20260228233000.Q1",
            &a("bob"),
            &["x@ext.fr", &a("alice")],
            "2026-02-28T23:30:00Z",
            1234,
        ),
        // 2026-02-28 23:30 in Paris: February.
        msg(
            "t1.20260228223000.Q0",
            &a("bob"),
            &["y@ext.fr"],
            "2026-02-28T22:30:00Z",
            99,
        ),
        // Excluded senders: a test BAL, a BAL suspended before March.
        msg(
            "t1.20260305100000.C1",
            &a("carol"),
            &["x@ext.fr"],
            "2026-03-05T10:00:00Z",
            11,
        ),
        msg(
            "t1.20260306100000.D1",
            &a("dave"),
            &["x@ext.fr"],
            "2026-03-06T10:00:00Z",
            12,
        ),
        // Same second: MAIL_ID decides.
        msg(
            "t1.20260310120000.B",
            &a("gina"),
            &["r@ext.fr"],
            "2026-03-10T12:00:00Z",
            600,
        ),
        msg(
            "t1.20260310120000.A",
            &a("bob"),
            &["r@ext.fr"],
            "2026-03-10T12:00:00Z",
            500,
        ),
        msg(
            "t1.20260320100000.P1",
            &a("app"),
            &["p@ext.fr"],
            "2026-03-20T10:00:00Z",
            321,
        ),
        // zed is not in the registry: discovered.
        msg(
            "t1.20260321091530.Z1",
            &a("zed"),
            &["q@ext.fr"],
            "2026-03-21T09:15:30Z",
            77,
        ),
        // Between two operator domains: outbound for ch-a, received for ch-b.
        msg(
            "t1.20260322080000.X1",
            &a("bob"),
            &["u@ch-b.mssante.fr"],
            "2026-03-22T08:00:00Z",
            900,
        ),
        // Inbound only: the applicative BAL's last reception.
        msg(
            "t1.20260325080000.I1",
            "x@ext.fr",
            &[&a("app")],
            "2026-03-25T08:00:00Z",
            5000,
        ),
        // DST starts 2026-03-29 at 01:00 UTC (02:00 CET -> 03:00 CEST).
        msg(
            "t1.20260329005959.E1",
            &a("erin"),
            &["z@ext.fr", "y@ext.fr"],
            "2026-03-29T00:59:59Z",
            2048,
        ),
        msg(
            "t1.20260329010000.A1",
            &a("alice"),
            &["w@ext.fr"],
            "2026-03-29T01:00:00Z",
            4096,
        ),
        // 23:30 CEST on the 31st: March; 00:30 CEST on 1 April: April.
        msg(
            "t1.20260331213000.A2",
            &a("alice"),
            &["v@ext.fr"],
            "2026-03-31T21:30:00Z",
            10,
        ),
        msg(
            "t1.20260331223000.A3",
            &a("alice"),
            &["v@ext.fr"],
            "2026-03-31T22:30:00Z",
            20,
        ),
        // October: 00:30 CEST on 1 October belongs to October.
        msg(
            "t1.20260930223000.S1",
            &a("bob"),
            &["x@ext.fr"],
            "2026-09-30T22:30:00Z",
            100,
        ),
        // DST ends 2026-10-25 at 01:00 UTC: 02:30 happens twice; time decides, not MAIL_ID.
        msg(
            "t1.z-first",
            &a("bob"),
            &["x@ext.fr"],
            "2026-10-25T00:30:00Z",
            200,
        ),
        msg(
            "t1.a-second",
            &a("bob"),
            &["x@ext.fr"],
            "2026-10-25T01:30:00Z",
            300,
        ),
        // 23:30 CET on 31 October: October; 00:30 CET on 1 November: November.
        msg(
            "t1.20261031223000.L1",
            &a("bob"),
            &["x@ext.fr"],
            "2026-10-31T22:30:00Z",
            400,
        ),
        msg(
            "t1.20261031233000.L2",
            &a("bob"),
            &["x@ext.fr"],
            "2026-10-31T23:30:00Z",
            500,
        ),
        login(&a("alice"), "2026-02-15T10:00:00Z", "imap"),
        login(&a("alice"), "2026-03-10T08:00:00Z", "imap"),
        // 00:10 CEST on 1 April: not a March login.
        login(&a("alice"), "2026-03-31T22:10:00Z", "webmail"),
        login(&a("erin"), "2026-01-20T07:00:00Z", "pop3"),
        login(&a("notrack"), "2026-03-03T07:00:00Z", "imap"),
        login("u@ch-b.mssante.fr", "2026-03-02T07:45:10Z", "webmail"),
        // Only a login: discovered on ch-b.
        login("v2@ch-b.mssante.fr", "2026-03-04T11:00:00Z", "imap"),
        // Not an operator domain: ignored.
        login("x@ext.fr", "2026-03-04T11:00:00Z", "imap"),
    ];
    cap.apply(&records, &cls, true).unwrap();
    drop(cap);

    let reg = RegistryStore::open(&dir.path().join("registry")).unwrap();
    let active = [(Status::Active, None)];
    let mut carol = mailbox(&a("carol"), BalType::Personnelle, &active);
    carol.test = true;
    let mut notrack = mailbox(&a("notrack"), BalType::Personnelle, &active);
    notrack.login_tracking = false;
    reg.put_all(&[
        mailbox(&a("alice"), BalType::Personnelle, &active),
        mailbox(&a("bob"), BalType::Personnelle, &active),
        carol,
        mailbox(
            &a("dave"),
            BalType::Personnelle,
            &[(Status::Active, None), (Status::Suspended, d("2026-02-20"))],
        ),
        mailbox(
            &a("erin"),
            BalType::Personnelle,
            &[(Status::Active, None), (Status::Deleted, d("2026-03-15"))],
        ),
        // Created after [coverage] logins_since, never logged in: empty date.
        mailbox(
            &a("gina"),
            BalType::Organisationnelle,
            &[
                (Status::Active, d("2026-02-01")),
                (Status::Suspended, d("2026-04-10")),
            ],
        ),
        mailbox(&a("app"), BalType::Applicative, &active),
        mailbox(&a("app2"), BalType::Applicative, &active),
        notrack,
        mailbox("u@ch-b.mssante.fr", BalType::Personnelle, &active),
    ])
    .unwrap();
    drop(reg);
    Setup { dir, config }
}

pub fn export(s: &Setup, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("mss-export"))
        .arg("--config")
        .arg(&s.config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every entry of the archives printed by a build, checked to be deflated
/// and at the root.
pub fn entries(archives: &str) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    for path in archives.lines() {
        let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
        for i in 0..z.len() {
            let mut e = z.by_index(i).unwrap();
            assert_eq!(e.compression(), zip::CompressionMethod::Deflated);
            let name = e.name().unwrap().into_owned();
            assert!(!name.contains('/'), "{name} not at the root");
            let mut b = vec![];
            e.read_to_end(&mut b).unwrap();
            assert!(all.insert(name.clone(), b).is_none(), "{name} twice");
        }
    }
    all
}

pub fn golden(month: &str) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    for e in std::fs::read_dir(golden_dir().join(month)).unwrap() {
        let e = e.unwrap();
        all.insert(
            e.file_name().to_string_lossy().into_owned(),
            std::fs::read(e.path()).unwrap(),
        );
    }
    all
}

/// `MSS_BLESS=MONTH` rewrites `tests/golden/MONTH` from what was built
/// (then review the diff: the golden files are the contract).
pub fn assert_same(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) {
    if let Ok(month) = std::env::var("MSS_BLESS") {
        if got.keys().all(|k| k.starts_with(&month)) {
            let dir = golden_dir().join(&month);
            for (name, bytes) in got {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
            return;
        }
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in want {
        assert_eq!(
            String::from_utf8_lossy(&got[name]),
            String::from_utf8_lossy(bytes),
            "{name} differs from tests/golden"
        );
    }
}
