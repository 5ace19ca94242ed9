//! Delivery to a local SIPIL that requires a client certificate: the real
//! `mss-export` binary, a temporary config, registry and empty capture store.

use std::path::{Path, PathBuf};
use std::process::Command;

use mss_shared::exit;
use mss_tests::sidecar::{bin, DOMAIN};
use mss_tests::sipil::{Pki, PkiFiles, SipilServer};

const MONTH: &str = "2026-01";
const ARCHIVE: &str = "202601_IndicateursMSSante.zip";
const EMAIL: &str = "postmaster@ch-test.mssante.fr";
/// Day 2 of the month after MONTH: well before the deadline (day 5).
const EARLY: &str = "2026-02-02T08:00:00+01:00";

struct Env {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    config: PathBuf,
    files: PkiFiles,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Env {
    fn new(pki: &Pki, server: &SipilServer) -> Env {
        Env::with(pki, server, |_| {}, "")
    }

    /// `files` may swap the client certificate; `extra` adds [sipil] keys.
    fn with(
        pki: &Pki,
        server: &SipilServer,
        files: impl FnOnce(&mut PkiFiles),
        extra: &str,
    ) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut f = pki.write(&dir);
        files(&mut f);
        // An empty capture store and one registered mailbox (the validator
        // refuses a Connexions file without any BAL).
        drop(mss_shared::store::capture::CaptureStore::open(&dir.join("capture")).unwrap());
        add_mailbox(&dir.join("registry"), &format!("dr.a@{DOMAIN}"));
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[operator]\ndomains = [\"{DOMAIN}\"]\nnode = \"t1\"\n\n[store]\ncapture_path = \"{}\"\nregistry_path = \"{}\"\n\n[export]\nout_dir = \"{}\"\n\n[sipil]\npost_url = \"{}\"\nreport_url = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\nca_file = \"{}\"\nreport_email = \"{EMAIL}\"\nmax_attempts = 3\nretry_delay_ms = 50\nreport_polls = 1\nreport_poll_interval_secs = 0\ntimeout_secs = 20\nconnect_timeout_secs = 5\n{extra}\n",
                dir.join("capture").display(),
                dir.join("registry").display(),
                dir.join("exports").display(),
                server.post_url(),
                server.report_url(),
                f.client_cert.display(),
                f.client_key.display(),
                f.ca.display(),
            ),
        )
        .unwrap();
        Env {
            _dir: tmp,
            dir,
            config,
            files: f,
        }
    }

    fn export(&self, args: &[&str]) -> Out {
        let out = Command::new(bin("mss-export"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        let o = Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!(
            "$ mss-export {}\n-> {}\n{}{}",
            args.join(" "),
            o.code,
            o.stdout,
            o.stderr
        );
        o
    }

    fn run_at(&self, now: &str) -> Out {
        self.export(&["run", "--month", MONTH, "--now", now])
    }

    /// The month's entry of `status --json`.
    fn status(&self) -> serde_json::Value {
        let o = self.export(&["status", "--json"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        v["months"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["month"] == MONTH)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    fn archive(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("exports").join(ARCHIVE)).unwrap()
    }
}

fn add_mailbox(registry: &Path, bal: &str) {
    use mss_shared::store::registry::{BalType, Mailbox, RegistryStore, Status, StatusChange};
    let reg = RegistryStore::open(registry).unwrap();
    reg.put_all(&[Mailbox {
        bal: bal.into(),
        kind: BalType::Organisationnelle,
        test: false,
        finess_ej: None,
        finess_eg: None,
        login_tracking: true,
        history: vec![StatusChange {
            recorded: None,
            status: Status::Active,
            date: None,
        }],
    }])
    .unwrap();
}

fn zip_names(bytes: &[u8]) -> Vec<String> {
    let z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    z.file_names().map(|n| n.unwrap().into_owned()).collect()
}

fn trusted() -> (Pki, SipilServer) {
    let pki = Pki::new();
    let server = SipilServer::start(&pki.server, pki.ca.der());
    (pki, server)
}

#[test]
fn submit_deposits_the_exact_zip_with_the_email_and_records_the_deposit_id() {
    let (pki, server) = trusted();
    let env = Env::new(&pki, &server);
    let o = env.export(&["submit", "--month", MONTH]);
    assert_eq!(o.code, exit::OK, "{}", o.stderr);

    let posts = server.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].method, "POST");
    let file = posts[0].part("file").expect("file part");
    assert_eq!(file.filename.as_deref(), Some(ARCHIVE));
    assert_eq!(
        file.data,
        env.archive(),
        "the server got the exact ZIP bytes"
    );
    let names = zip_names(&file.data);
    assert_eq!(
        names,
        vec![
            format!("202601_EchangesMSSante_{DOMAIN}.csv"),
            format!("202601_ConnexionsMSSante_{DOMAIN}.csv"),
        ]
    );
    assert!(names.iter().all(|n| !n.contains('/')), "files at the root");
    assert_eq!(posts[0].part("email").unwrap().data, EMAIL.as_bytes());

    let issued = server.issued();
    assert_eq!(issued.len(), 1);
    assert!(o.stdout.contains(&issued[0]), "{}", o.stdout);
    let st = env.status();
    assert_eq!(st["state"], "submitted");
    assert_eq!(st["deposit_ids"], serde_json::json!([issued[0]]));
    assert_eq!(st["archives"][0]["file"], ARCHIVE);
    assert_eq!(st["archives"][0]["size"], env.archive().len() as u64);
    assert_eq!(st["archives"][0]["sha256"].as_str().unwrap().len(), 64);

    // The report is fetched with the deposit id in the `id` parameter.
    let o = env.export(&["report", "--month", MONTH]);
    assert_eq!(o.code, exit::OK, "{}", o.stderr);
    assert!(o.stdout.contains("Dépôt accepté"), "{}", o.stdout);
    assert_eq!(
        server.reports()[0].query.as_deref(),
        Some(format!("id={}", issued[0]).as_str())
    );
    assert_eq!(env.status()["state"], "accepted");
    // An accepted month is never submitted again.
    let o = env.export(&["submit", "--month", MONTH]);
    assert_eq!(o.code, exit::CONFIG, "{}", o.stderr);
    assert!(o.stderr.contains("already accepted"), "{}", o.stderr);
    assert_eq!(server.posts().len(), 1);
}

#[test]
fn client_certificate_from_another_ca_is_refused_and_nothing_is_recorded_as_submitted() {
    let (pki, server) = trusted();
    let env = Env::with(
        &pki,
        &server,
        |f| {
            f.client_cert = f.rogue_cert.clone();
            f.client_key = f.rogue_key.clone();
        },
        "",
    );
    let o = env.export(&["submit", "--month", MONTH]);
    assert_eq!(o.code, exit::SIPIL, "{}", o.stderr);
    assert!(
        o.stderr
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains("TLS")),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("client certificate"), "{}", o.stderr);
    assert!(server.posts().is_empty());
    let t = std::time::Instant::now();
    while server.handshake_errors().is_empty() && t.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !server.handshake_errors().is_empty(),
        "the server refused the handshake"
    );
    let st = env.status();
    assert_eq!(st["state"], "validated");
    assert_eq!(st["deposit_ids"], serde_json::json!([]));
    assert!(st["last_error"].is_null() || st["last_error"].is_string());
}

#[test]
fn server_certificate_from_an_untrusted_ca_is_refused() {
    let pki = Pki::new();
    let server = SipilServer::start(&pki.rogue_server, pki.ca.der());
    let env = Env::new(&pki, &server);
    let o = env.export(&["submit", "--month", MONTH]);
    assert_eq!(o.code, exit::SIPIL, "{}", o.stderr);
    assert!(
        o.stderr.contains("TLS handshake failed")
            && o.stderr.contains("not signed by a CA of sipil.ca_file"),
        "{}",
        o.stderr
    );
    assert_eq!(
        o.stderr.matches("attempt").count(),
        0,
        "not retried: {}",
        o.stderr
    );
    assert!(server.posts().is_empty());
    assert_eq!(env.status()["state"], "validated");
}

#[test]
fn unavailable_server_is_retried() {
    let (pki, server) = trusted();
    server.script_posts(&[(503, "maintenance"), (503, "maintenance")]);
    let env = Env::new(&pki, &server);
    let o = env.export(&["submit", "--month", MONTH]);
    assert_eq!(o.code, exit::OK, "{}", o.stderr);
    assert_eq!(server.posts().len(), 3);
    assert_eq!(o.stderr.matches("retrying").count(), 2, "{}", o.stderr);
    assert_eq!(
        env.status()["deposit_ids"],
        serde_json::json!(server.issued())
    );

    // Past max_attempts: exit 9, the HTTP status named.
    let (pki, server) = trusted();
    server.script_posts(&[(503, "maintenance"); 3]);
    let env = Env::new(&pki, &server);
    let o = env.export(&["submit", "--month", MONTH]);
    assert_eq!(o.code, exit::SIPIL, "{}", o.stderr);
    assert!(
        o.stderr.contains("HTTP 503") && o.stderr.contains("after 3 attempts"),
        "{}",
        o.stderr
    );
    assert_eq!(env.status()["state"], "validated");
}

#[test]
fn pending_report_then_accepted_then_run_does_nothing() {
    let (pki, server) = trusted();
    server.script_reports(&[(200, "Traitement en cours")]);
    let env = Env::new(&pki, &server);
    let o = env.run_at(EARLY);
    assert_eq!(o.code, exit::PENDING, "{}", o.stderr);
    assert_eq!(env.status()["state"], "report_pending");
    assert_eq!(server.posts().len(), 1);

    let o = env.run_at(EARLY);
    assert_eq!(o.code, exit::OK, "{}", o.stderr);
    let st = env.status();
    assert_eq!(st["state"], "accepted");
    assert_eq!(st["last_report"]["verdict"], "accepted");
    assert_eq!(server.posts().len(), 1, "not deposited again");
    assert_eq!(server.reports().len(), 2);

    // Accepted: the next run calls nobody.
    let o = env.run_at("2026-02-04T08:00:00+01:00");
    assert_eq!(o.code, exit::OK, "{}", o.stderr);
    assert!(o.stdout.contains("nothing to do"), "{}", o.stdout);
    assert_eq!(server.posts().len(), 1);
    assert_eq!(server.reports().len(), 2);
}

#[test]
fn rejected_report_with_unchanged_data_is_not_resubmitted_changed_data_is() {
    let (pki, server) = trusted();
    let rejected = "Dépôt rejeté : 2 erreurs bloquantes";
    server.script_reports(&[(200, rejected)]);
    let env = Env::new(&pki, &server);
    let o = env.run_at(EARLY);
    assert_eq!(o.code, exit::REJECTED, "{}", o.stderr);
    assert!(o.stdout.contains("rejected"), "{}", o.stdout);
    assert!(o.stderr.contains("same archive"), "{}", o.stderr);
    assert_eq!(env.status()["state"], "rejected");
    assert_eq!(server.posts().len(), 1);

    let o = env.run_at(EARLY);
    assert_eq!(o.code, exit::REJECTED, "{}", o.stderr);
    assert_eq!(server.posts().len(), 1, "unchanged data: no resubmission");

    // The registry changes: the rebuilt archive differs, it is resubmitted.
    add_mailbox(&env.dir.join("registry"), &format!("secretariat@{DOMAIN}"));
    let o = env.run_at(EARLY);
    assert_eq!(o.code, exit::OK, "{}", o.stderr);
    assert_eq!(server.posts().len(), 2);
    let csv = zip_names(&server.posts()[1].part("file").unwrap().data);
    assert_eq!(csv.len(), 2);
    assert_eq!(env.status()["state"], "accepted");
}

#[test]
fn deadline_warns_then_fails() {
    let (pki, server) = trusted();
    server.script_reports(&[(200, "en attente"); 3]);
    let env = Env::new(&pki, &server);
    // Day 3 = deadline_day - 2: loud warning, still "pending".
    let o = env.run_at("2026-02-03T09:00:00+01:00");
    assert_eq!(o.code, exit::PENDING, "{}", o.stderr);
    assert!(
        o.stderr.contains("WARNING") && o.stderr.contains("2026-02-05"),
        "{}",
        o.stderr
    );
    // Day 6: past the deadline without acceptance.
    let o = env.run_at("2026-02-06T09:00:00+01:00");
    assert_eq!(o.code, exit::DEADLINE, "{}", o.stderr);
    assert!(o.stderr.contains("DEADLINE PASSED"), "{}", o.stderr);
    assert_eq!(env.status()["state"], "report_pending");
}

#[test]
fn bad_tls_identity_is_a_configuration_error_naming_the_key() {
    use std::os::unix::fs::PermissionsExt;
    let (pki, server) = trusted();
    let env = Env::new(&pki, &server);
    let key: &Path = &env.files.client_key;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = env.export(&["submit", "--month", MONTH]);
    assert_eq!(o.code, exit::CONFIG, "{}", o.stderr);
    assert!(
        o.stderr.contains("`sipil.client_key`") && o.stderr.contains("chmod 600"),
        "{}",
        o.stderr
    );
    assert!(
        !o.stderr.contains("PRIVATE KEY"),
        "never prints key material"
    );

    // A key that is not the certificate's.
    std::fs::copy(&env.files.rogue_key, key).unwrap();
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = env.export(&["submit", "--month", MONTH]);
    assert_eq!(o.code, exit::CONFIG, "{}", o.stderr);
    assert!(
        o.stderr.contains("does not match the certificate"),
        "{}",
        o.stderr
    );
    assert!(server.posts().is_empty());
}
