//! `mss-export build` on a month of crafted data, compared byte for byte with
//! the expected files in `tests/golden/`: multi-recipient mails, excluded
//! (test, suspended, deleted) BALs on both sides of the month boundaries,
//! applicative BALs with and without activity, never-connected and
//! untracked BALs, discovered BALs, both DST changes and month edges in
//! Europe/Paris. Then: re-export after later registry changes, splitting,
//! a file too large, and `validate` on each kind of defect.

use std::io::Write;

use mss_shared::store::registry::{RegistryStore, Status, StatusChange};
use mss_tests::golden::*;

#[test]
fn march_and_october_match_the_golden_files_byte_for_byte() {
    let s = setup("");
    let out = s.dir.path().join("out");
    let (code, stdout, stderr) = export(
        &s,
        &[
            "build",
            "--month",
            "2026-03",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        out.join("202603_IndicateursMSSante.zip")
            .display()
            .to_string()
    );
    // The summary says what was left out and why.
    assert!(
        stderr.contains("excluded carol@ch-a.mssante.fr: test mailbox"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("excluded dave@ch-a.mssante.fr: suspended since 2026-02-20, before 2026-03"),
        "{stderr}"
    );
    assert!(stderr.contains("2 discovered"), "{stderr}");
    let march = entries(&stdout);
    assert_same(&march, &golden("202603"));

    let (code, stdout, stderr) = export(
        &s,
        &[
            "build",
            "--month",
            "2026-10",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_same(&entries(&stdout), &golden("202610"));

    // Later changes (after March's M = April) do not alter March's files.
    let reg = RegistryStore::open(&s.dir.path().join("registry")).unwrap();
    let mut alice = reg.get(&format!("alice@{A}")).unwrap().unwrap();
    alice.record(StatusChange {
        recorded: None,
        status: Status::Deleted,
        date: d("2026-05-02"),
    });
    let mut dave = reg.get(&format!("dave@{A}")).unwrap().unwrap();
    dave.record(StatusChange {
        recorded: None,
        status: Status::Active,
        date: d("2026-05-01"),
    });
    reg.put_all(&[alice, dave]).unwrap();
    drop(reg);
    let (code, stdout, stderr) = export(
        &s,
        &[
            "build",
            "--month",
            "2026-03",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_same(&entries(&stdout), &march);

    // Our own output validates; the JSON report has the counts.
    let (code, v, _) = export(
        &s,
        &[
            "validate",
            out.join("202603_IndicateursMSSante.zip").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{v}");
    let (code, json, stderr) = export(
        &s,
        &[
            "build",
            "--month",
            "2026-03",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    let a = j["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == A)
        .unwrap();
    assert_eq!(a["echanges_rows"], 11);
    assert_eq!(a["excluded_rows"], 2);
    assert_eq!(a["connexions_rows"], 8);
    assert_eq!(a["discovered"], 1);
}

#[test]
fn a_month_without_data_gives_header_only_files_and_an_unfinished_month_warns() {
    let s = setup("");
    let out = s.dir.path().join("out");
    let (code, stdout, stderr) = export(
        &s,
        &[
            "build",
            "--month",
            "2025-01",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let files = entries(&stdout);
    assert_eq!(files.len(), 6);
    for (name, bytes) in &files {
        let want: &[u8] = if name.contains("Echanges") {
            b"MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE\r\n"
        } else if name.contains("ch-b") {
            // u@ch-b is registered with an undated active status (exists since an
            // unknown date) and has no login up to January 2025: unknown, not "never".
            b"BAL;DATE_DERNIERE_CONNEXION\r\nu@ch-b.mssante.fr;1900-01-01 00:00:00\r\n"
        } else if name.contains(A) {
            &[]
        } else {
            b"BAL;DATE_DERNIERE_CONNEXION\r\n"
        };
        if !want.is_empty() {
            assert_eq!(
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(want),
                "{name}"
            );
        }
    }
    let now = mss_shared::month::Month::current(&jiff::tz::TimeZone::get("Europe/Paris").unwrap());
    let (code, _, stderr) = export(
        &s,
        &[
            "build",
            "--month",
            &now.to_string(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("is not over yet"), "{stderr}");

    // A month older than retention is refused (its rows are purged), exit 13.
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        cfg.replace("retention_months = 240", "retention_months = 3"),
    )
    .unwrap();
    let (code, _, stderr) = export(
        &s,
        &[
            "build",
            "--month",
            "2026-03",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 13, "{stderr}");
    assert!(
        stderr.contains("2026-03 is older than store.retention_months = 3"),
        "{stderr}"
    );
}

#[test]
fn archives_split_at_file_boundaries_and_a_file_too_large_is_named() {
    let s = setup("max_archive_bytes = 1600");
    let out = s.dir.path().join("out");
    let (code, stdout, stderr) = export(
        &s,
        &[
            "build",
            "--month",
            "2026-03",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let paths: Vec<&str> = stdout.lines().collect();
    let n = paths.len();
    assert!(n > 1, "{stdout}");
    for (i, p) in paths.iter().enumerate() {
        assert!(
            p.ends_with(&format!("202603_IndicateursMSSante_{}-{n}.zip", i + 1)),
            "{p}"
        );
        assert!(std::fs::metadata(p).unwrap().len() <= 1600, "{p}");
        let (code, v, _) = export(&s, &["validate", p]);
        assert_eq!(code, 0, "{v}");
    }
    assert_same(&entries(&stdout), &golden("202603"));

    let s = setup("max_archive_bytes = 300");
    let (code, stdout, stderr) = export(
        &s,
        &[
            "build",
            "--month",
            "2026-03",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("202603_EchangesMSSante_ch-a.mssante.fr.csv is")
            && stderr.contains("cannot fit in any archive"),
        "{stderr}"
    );
}

/// One fixture per defect: `validate` names the file, the line and the reason, exit 1.
#[test]
fn validate_reports_each_kind_of_defect() {
    let s = setup("");
    let dir = s.dir.path();
    let head = "MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE\r\n";
    let ok = "m1;a@ch-a.mssante.fr;b@ext.fr;2026-03-01 00:00:00;10\r\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!("{head}{ok}"),
            "",
        ),
        (
            "2026-03_Echanges_ch-a.csv",
            format!("{head}{ok}"),
            "file name is not",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            "MAIL_ID,EXPEDITEUR,DESTINATAIRE,DATE,TAILLE\r\n".to_string(),
            ":1: header must be exactly",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!("{head}m1;a@ch-a.mssante.fr;b@ext.fr;2026-03-01 00:00:00\r\n"),
            ":2: 4 fields, 5 expected",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!("{head}m1;a@ch-a.mssante.fr;b@ext.fr;01/03/2026 00:00;10\r\n"),
            ":2: DATE \"01/03/2026 00:00\" is not AAAA-MM-JJ HH:mm:SS",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!("{head}m1;a@ch-a.mssante.fr;b@ext.fr;2026-04-01 00:00:00;10\r\n"),
            ":2: DATE \"2026-04-01 00:00:00\" is outside the month 2026-03",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!("{head}m1;a@ch-a.mssante.fr;b@ext.fr;2026-03-01 00:00:00;-1\r\n"),
            ":2: TAILLE \"-1\" is not a whole number",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!("{head}m1;a@ch-a.mssante.fr;not-an-address;2026-03-01 00:00:00;10\r\n"),
            ":2: DESTINATAIRE \"not-an-address\" is not an address",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!(
                "{head}m1;{}@ch-a.mssante.fr;b@ext.fr;2026-03-01 00:00:00;10\r\n",
                "a".repeat(250)
            ),
            ":2: EXPEDITEUR longer than 255 characters",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!("{head};a@ch-a.mssante.fr;b@ext.fr;2026-03-01 00:00:00;10\r\n"),
            ":2: MAIL_ID is empty",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!("{head}{ok}{ok}"),
            ":3: MAIL_ID \"m1\" with DESTINATAIRE \"b@ext.fr\" appears twice",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!("{head}{ok}m1;a@ch-a.mssante.fr;c@ext.fr;2026-03-01 00:00:00;11\r\n"),
            ":3: MAIL_ID \"m1\": EXPEDITEUR or TAILLE differs",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!("{head}m1;a@ch-b.mssante.fr;b@ext.fr;2026-03-01 00:00:00;10\r\n"),
            ":2: EXPEDITEUR \"a@ch-b.mssante.fr\" is not on ch-a.mssante.fr",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!("{head}m1;a@ch-a.mssante.fr;b@ext.fr;2026-03-01 00:00:00;10\n"),
            ":2: line ends with LF, CRLF expected",
        ),
        (
            "202603_EchangesMSSante_ch-a.mssante.fr.csv",
            format!("\u{feff}{head}{ok}"),
            ":1: starts with a byte-order mark",
        ),
        (
            "202603_ConnexionsMSSante_ch-a.mssante.fr.csv",
            "BAL;DATE_DERNIERE_CONNEXION\r\na@ch-a.mssante.fr;null\r\n".into(),
            ":2: DATE_DERNIERE_CONNEXION is the text \"null\"",
        ),
        (
            "202603_ConnexionsMSSante_ch-a.mssante.fr.csv",
            "BAL;DATE_DERNIERE_CONNEXION\r\na@ch-a.mssante.fr;\r\nA@ch-a.mssante.fr;\r\n".into(),
            ":3: BAL \"A@ch-a.mssante.fr\" appears twice",
        ),
        (
            "202603_ConnexionsMSSante_ch-a.mssante.fr.csv",
            "BAL;DATE_DERNIERE_CONNEXION\r\na@ch-a.mssante.fr;2026-03-01\r\n".into(),
            ":2: DATE_DERNIERE_CONNEXION \"2026-03-01\" is neither empty",
        ),
        (
            "202603_ConnexionsMSSante_ch-a.mssante.fr.csv",
            "".into(),
            "empty file",
        ),
    ];
    for (i, (name, content, want)) in cases.iter().enumerate() {
        let sub = dir.join(format!("case{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        let p = sub.join(name);
        std::fs::write(&p, content).unwrap();
        let (code, stdout, stderr) = export(&s, &["validate", p.to_str().unwrap()]);
        if want.is_empty() {
            assert_eq!(code, 0, "{name}: {stdout}{stderr}");
            assert!(stdout.contains("valid"), "{stdout}");
        } else {
            assert_eq!(code, 5, "case {i} {want}: {stdout}{stderr}");
            assert!(
                stdout.contains(&format!("{name}{want}")) || stdout.contains(want),
                "case {i}: {want} not in {stdout}"
            );
            assert!(stderr.contains("problem(s)"), "{stderr}");
        }
    }

    // Archives: a file in a folder, an archive too large, not a ZIP at all.
    let good = format!("{head}{ok}");
    let zpath = dir.join("202603_IndicateursMSSante.zip");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zpath).unwrap());
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("sub/202603_EchangesMSSante_ch-a.mssante.fr.csv", o)
            .unwrap();
        z.write_all(good.as_bytes()).unwrap();
        z.start_file("202603_EchangesMSSante_ch-a.mssante.fr.csv", o)
            .unwrap();
        z.write_all(b"MAIL_ID;EXPEDITEUR\r\n").unwrap();
        z.finish().unwrap();
    }
    let (code, stdout, _) = export(&s, &["validate", zpath.to_str().unwrap()]);
    assert_eq!(code, 5);
    assert!(stdout.contains("files must be at the root"), "{stdout}");
    assert!(
        stdout.contains("202603_EchangesMSSante_ch-a.mssante.fr.csv:1: header must be exactly"),
        "{stdout}"
    );
    let small = setup("max_archive_bytes = 100");
    let (code, stdout, _) = export(&small, &["validate", zpath.to_str().unwrap()]);
    assert_eq!(code, 5);
    assert!(stdout.contains("more than the 100 allowed"), "{stdout}");
    let junk = dir.join("junk.zip");
    std::fs::write(&junk, b"PK not really").unwrap();
    let (code, stdout, _) = export(&s, &["validate", junk.to_str().unwrap()]);
    assert_eq!(code, 5);
    assert!(stdout.contains("not a readable ZIP archive"), "{stdout}");
}

#[test]
fn a_time_zone_change_between_capture_and_export_moves_the_boundaries_and_still_builds() {
    // Captured with Europe/Paris (month keys are Paris months), exported in UTC.
    let s = setup("");
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        cfg.replace("timezone = \"Europe/Paris\"", "timezone = \"UTC\""),
    )
    .unwrap();
    let out = s.dir.path().join("out");
    let (code, stdout, stderr) = export(
        &s,
        &[
            "build",
            "--month",
            "2026-03",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let files = entries(&stdout);
    let ech =
        String::from_utf8_lossy(&files[&format!("202603_EchangesMSSante_{A}.csv")]).into_owned();
    let lines: Vec<&str> = ech.lines().collect();
    // 2026-02-28T23:30Z (a Paris March mail) is February in UTC: gone from March;
    // 2026-03-31T22:30Z (a Paris April mail, keyed April) is March in UTC: in.
    assert!(!ech.contains(".Q1;"), "{ech}");
    assert_eq!(
        lines[1],
        "t1.20260310120000.A;bob@ch-a.mssante.fr;r@ext.fr;2026-03-10 12:00:00;500"
    );
    assert_eq!(
        lines.last().copied(),
        Some("t1.20260331223000.A3;alice@ch-a.mssante.fr;v@ext.fr;2026-03-31 22:30:00;20")
    );
    // Every row's date is inside March in UTC, in file order.
    let dates: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(';').nth(3).unwrap())
        .collect();
    assert!(dates.iter().all(|d| d.starts_with("2026-03-")), "{dates:?}");
    assert!(dates.windows(2).all(|w| w[0] <= w[1]), "{dates:?}");
}
