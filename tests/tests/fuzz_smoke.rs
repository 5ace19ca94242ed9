//! Stable-toolchain fuzzing: every parser exposed in `mss_sidecar::fuzz`
//! (and `mss-export validate`) gets a few hundred thousand deterministic,
//! mutated inputs (seeded xorshift, no dependency). Any panic — including a
//! failed `debug_assert!` — fails the test and prints the reproducer.
//! `FUZZ_SMOKE_ITERS` overrides the per-target count; the libFuzzer targets
//! in `fuzz/` drive the same entry points (nightly only).

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use mss_exporter::validate::{check_bytes, Rules};
use mss_sidecar::fuzz;

/// xorshift64*: tiny, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the parsers under test.
const INTERESTING: &[u8] = b"\r\n\t.:;<>@\"{}[],\\\x01\x00\xff=-/ 0129Zz";

/// Tokens spliced in by the mutator.
const TOKENS: &[&[u8]] = &[
    b"\r\n.\r\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"DATA\r\n",
    b"BDAT 5 LAST\r\n",
    b"BDAT 0\r\n",
    b"RCPT TO:<",
    b"MAIL FROM:<",
    b"AUTH PLAIN ",
    b"AUTH LOGIN\r\n",
    b"STARTTLS\r\n",
    b"250-",
    b"354 ",
    b"\"bal\"",
    b"\"time\"",
    b"1790000000",
    b"2026-11-02T10:00:00Z",
    b"user=<",
    b"sasl_username=",
    b"-login: ",
    b"\x01t",
    b"\x011",
    b"shared/last-login/",
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"\xef\xbb\xbf",
    b"\"\"",
    b"9999999999999999999999",
    b"-1",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(6) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                v.drain(a..b);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let piece = v[a..b].to_vec();
                let at = rng.below(len + 1);
                v.splice(
                    at..at,
                    piece
                        .iter()
                        .copied()
                        .cycle()
                        .take(piece.len() * (1 + rng.below(4))),
                );
            }
            5 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(len + 1);
                v.splice(at..at, t.iter().copied());
            }
            6 if len > 0 => v.truncate(rng.below(len)),
            7 => {
                // Splice another seed's tail.
                let o = &seeds[rng.below(seeds.len())];
                let at = rng.below(len + 1);
                let from = rng.below(o.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&o[from..]);
            }
            _ => {
                let n = rng.below(8);
                for _ in 0..n {
                    v.push((rng.next() & 0xff) as u8);
                }
            }
        }
    }
    v
}

fn iters() -> usize {
    std::env::var("FUZZ_SMOKE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000)
}

/// Run `target` on `iters()` mutated inputs (plus the seeds themselves).
fn campaign(name: &str, seed: u64, seeds: &[Vec<u8>], target: impl Fn(&[u8])) {
    let n = iters();
    let t = Instant::now();
    let mut rng = Rng(seed);
    let mut bytes = 0usize;
    for i in 0..n + seeds.len() {
        let input = if i < seeds.len() {
            seeds[i].clone()
        } else {
            mutate(&mut rng, seeds)
        };
        bytes += input.len();
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            panic!(
                "{name}: panic on input #{i} (seed {seed:#x}): b\"{}\"",
                input.escape_ascii()
            );
        }
    }
    let line = format!(
        "fuzz_smoke {name}: {} executions, {bytes} bytes, {:.1} s\n",
        n + seeds.len(),
        t.elapsed().as_secs_f64()
    );
    eprint!("{line}");
    if let Ok(p) = std::env::var("FUZZ_SMOKE_REPORT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        f.write_all(line.as_bytes()).unwrap();
    }
}

fn seeds(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|s| s.to_vec()).collect()
}

/// Observer seeds: realistic sessions encoded as op streams (client bytes,
/// then one canned reply per command, in order).
fn session_seeds() -> Vec<Vec<u8>> {
    // (client chunk, replies to its commands), in sequence.
    type Step<'a> = (&'a [u8], &'a [u8]);
    let sessions: &[&[Step]] = &[
        &[
            (
                b"EHLO c\r\nMAIL FROM:<a@ch-a.mssante.fr>\r\nRCPT TO:<b@x.fr>\r\nRCPT TO:<c@x.fr>\r\nDATA\r\n",
                &[7, 0, 0, 5, 1],
            ),
            (
                b"Message-ID: <m@x>\r\nSubject: t\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n",
                &[6, 8],
            ),
        ],
        &[
            (
                b"EHLO c\r\nMAIL FROM:<a@ch-a.mssante.fr>\r\nRCPT TO:<b@x.fr>\r\nBDAT 10\r\n0123456789",
                &[7, 0, 0, 0],
            ),
            (b"BDAT 3 LAST\r\nabc", &[6]),
            (b"QUIT\r\n", &[8]),
        ],
        &[
            (
                b"EHLO c\r\nAUTH PLAIN AGFsaWNlQGNoLWEubXNzYW50ZS5mcgBzZWNyZXQ=\r\n",
                &[7, 3],
            ),
            (b"AUTH LOGIN\r\n", &[2]),
            (b"YWxpY2VAY2gtYS5tc3NhbnRlLmZy\r\n", &[2]),
            (b"c2VjcmV0\r\n", &[3]),
            (b"STARTTLS\r\nEHLO again\r\n", &[7]),
        ],
        &[
            (
                b"EHLO c\r\nMAIL FROM:<a@ch-a.mssante.fr>\r\nRCPT TO:<b@x.fr>\r\nDATA\r\n",
                &[7, 0, 0, 1],
            ),
            (b"x\n.\r\nMAIL FROM:<smuggled@x>\r\n", &[0]),
        ],
    ];
    let mut out = vec![];
    for steps in sessions {
        let mut v = vec![];
        for (client, replies) in steps.iter() {
            fuzz::encode_chunk(fuzz::OP_CLIENT, client, &mut v);
            for r in replies.iter() {
                fuzz::encode_reply(*r, &mut v);
            }
        }
        fuzz::encode_chunk(fuzz::OP_UPSTREAM, b"250-x\r\n250 ok\r\n", &mut v);
        out.push(v);
    }
    out
}

#[test]
fn proxy_observer_survives_mutated_sessions() {
    campaign(
        "proxy_observer",
        0x5eed_0001,
        &session_seeds(),
        fuzz::observer_session,
    );
}

#[test]
fn events_json_survives_mutated_bodies() {
    let s = seeds(&[
        br#"{"event":"auth_request_finished","end_time":"2026-11-02T10:00:00Z","fields":{"user":"alice@ch-a.mssante.fr","service":"imap","success":"yes"}}"#,
        br#"{"event":"auth_request_finished","end_time":1790000000.25,"fields":{"user":"a@b.fr","service":"doveadm","success":"yes"}}"#,
        br#"{"bal":"alice@ch-a.mssante.fr","time":"2026-11-02T10:00:00+01:00","service":"webmail"}"#,
        br#"[{"bal":"a@ch-a.mssante.fr","time":"2026-11-02T10:00:00Z","service":"portal"},{"bal":"b@ch-a.mssante.fr","time":"2026-11-02T10:00:00Z","service":"x"}]"#,
    ]);
    campaign("events_json", 0x5eed_0002, &s, fuzz::events_json);
}

#[test]
fn dict_protocol_survives_mutated_lines() {
    let s = seeds(&[
        b"H3\t2\t0\t\tlastlogin\nB1\talice@ch-a.mssante.fr\nS1\tshared/last-login/alice@ch-a.mssante.fr\t1790000000\nC1\n",
        b"B2\tb\x01tc\nS2\tshared/last-login/b@ch-a.fr\t1790000000\nA2\nL shared/x\nD2\n",
    ]);
    campaign("dict", 0x5eed_0003, &s, fuzz::dict_lines);
}

#[test]
fn mailbox_import_survives_mutated_csv() {
    let s = seeds(&[
        b"bal;type;status;status_date;test;finess_ej;finess_eg;login_tracking\r\nalice@ch-a.mssante.fr;personnelle;active;;no;010000024;;yes\r\nsvc@ch-a.mssante.fr;organisationnelle;suspended;2026-10-01;yes;;010000032;no\r\n",
        b"\xef\xbb\xbfBAL;Type;Status;Status_Date;Test;Finess_EJ;Finess_EG;Login_Tracking\n\"x;y\"@ch-a.mssante.fr;applicative;deleted;2026-02-29;no;;;\n",
    ]);
    campaign("mailbox_csv", 0x5eed_0004, &s, fuzz::mailbox_csv);
}

#[test]
fn backfill_survives_mutated_logs() {
    let s = seeds(&[
        b"Nov 22 10:00:01 mx dovecot: imap-login: Login: user=<Alice@ch-a.mssante.fr>, method=PLAIN, rip=192.0.2.1, session=<abc>\n2026-11-02T10:00:00.123+01:00 mx dovecot: pop3-login: Info: Login: user=<b@ch-a.mssante.fr>\n",
        b"Feb 29 23:59:59 mx postfix/submission/smtpd[123]: 4XyZ: client=x[192.0.2.1], sasl_method=PLAIN, sasl_username=c@ch-a.mssante.fr\n",
    ]);
    campaign("backfill", 0x5eed_0005, &s, fuzz::backfill_log);
}

fn rules() -> Rules {
    Rules {
        delimiter: b';',
        crlf: true,
        max_archive_bytes: 73_400_320,
    }
}

fn zip_seed() -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("202610_EchangesMSSante_ch-a.mssante.fr.csv", o)
            .unwrap();
        z.write_all(b"MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE\r\nmx1.1.A;x@ch-a.mssante.fr;y@b.fr;2026-10-01 00:30:00;123\r\n")
            .unwrap();
        z.start_file("202610_ConnexionsMSSante_ch-a.mssante.fr.csv", o)
            .unwrap();
        z.write_all(b"BAL;DATE_DERNIERE_CONNEXION\r\nx@ch-a.mssante.fr;\r\n")
            .unwrap();
        z.finish().unwrap();
    }
    buf.into_inner()
}

#[test]
fn validate_survives_mutated_csv_and_zip() {
    let csv = seeds(&[
        b"MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE\r\nmx1.1.A;x@ch-a.mssante.fr;y@b.fr;2026-10-01 00:30:00;123\r\nmx1.1.A;x@ch-a.mssante.fr;\"z;@b.fr\";2026-10-31 23:59:59;0\r\n",
        b"BAL;DATE_DERNIERE_CONNEXION\r\nx@ch-a.mssante.fr;\r\ny@ch-a.mssante.fr;1900-01-01 00:00:00\r\n",
    ]);
    campaign("validate_csv", 0x5eed_0006, &csv, |d| {
        check_bytes("202610_EchangesMSSante_ch-a.mssante.fr.csv", d, &rules());
        check_bytes("202610_ConnexionsMSSante_ch-a.mssante.fr.csv", d, &rules());
    });
    let zip = vec![zip_seed()];
    campaign("validate_zip", 0x5eed_0007, &zip, |d| {
        check_bytes("202610_ch-a.mssante.fr.zip", d, &rules());
    });
}

#[test]
fn seeds_are_meaningful() {
    // The seeds must exercise the interesting paths, or the campaigns prove little.
    let zip = zip_seed();
    assert_eq!(check_bytes("a.zip", &zip, &rules()), Vec::<String>::new());
    let sessions = session_seeds();
    assert_eq!(fuzz::observer_session_commits(&sessions[0]), 1);
    assert_eq!(fuzz::observer_session_commits(&sessions[1]), 1);
    assert_eq!(fuzz::observer_session_commits(&sessions[3]), 0);
    assert!(matches!(
        mss_sidecar::events::parse_dovecot(br#"{"event":"auth_request_finished","end_time":"2026-11-02T10:00:00Z","fields":{"user":"alice@ch-a.mssante.fr","service":"imap","success":"yes"}}"#),
        Ok(mss_sidecar::events::DovecotOutcome::Login(_))
    ));
}
