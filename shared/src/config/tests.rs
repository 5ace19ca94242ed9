use std::path::PathBuf;

use super::*;

const MIN: &str = "[operator]\ndomains = [\"ch-a.mssante.fr\"]\n";

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(MIN).unwrap();
    assert_eq!(c.operator.timezone, "Europe/Paris");
    assert_eq!(c.store.retention_months, 13);
    assert_eq!(c.export.max_archive_bytes, 70_000_000);
    assert_eq!(
        c.store.journal_path(),
        PathBuf::from("/var/lib/mss-sidecar/capture.journal")
    );
}

#[test]
fn unknown_key_names_key_and_line() {
    let e = Config::parse(&format!("{MIN}\n[proxy]\nlisen = \"x\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `lisen`"), "{e}");
    assert!(e.contains("line 4 in [proxy]"), "{e}");
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("[operator]\ndomains = []\n", "operator.domains"),
        ("[operator]\ndomains = [\"Not A Domain\"]\n", "operator.domains"),
        (
            "[operator]\ndomains = [\"a.fr\"]\ntimezone = \"Mars/Base\"\n",
            "operator.timezone",
        ),
        (
            "[operator]\ndomains = [\"a.fr\"]\n[proxy]\nlisten = \"nowhere\"\nupstream = \"127.0.0.1:25\"\n",
            "proxy.listen",
        ),
        (
            "[operator]\ndomains = [\"a.fr\"]\n[proxy]\nlisten = \"127.0.0.1:1\"\nupstream = \"x\"\n",
            "proxy.upstream",
        ),
        (
            "[operator]\ndomains = [\"a.fr\"]\n[sipil]\npost_url = \"u\"\nreport_url = \"u\"\nreport_email = \"nobody\"\n",
            "sipil.report_email",
        ),
        (
            "[operator]\ndomains = [\"a.fr\"]\n[sipil]\npost_url = \"http://x.fr/p\"\nreport_url = \"https://x.fr/r\"\n",
            "sipil.post_url",
        ),
        (
            "[operator]\ndomains = [\"a.fr\"]\n[sipil]\npost_url = \"https://x.fr/p\"\nreport_url = \"https://x.fr/r\"\ndeposit_id_regex = \"id=\\\\d+\"\n",
            "sipil.deposit_id_regex",
        ),
        (
            "[operator]\ndomains = [\"a.fr\"]\n[sipil]\npost_url = \"https://x.fr/p\"\nreport_url = \"https://x.fr/r\"\nreport_pending = \"(unclosed\"\n",
            "sipil.report_pending",
        ),
        (
            "[operator]\ndomains = [\"a.fr\"]\n[store]\ncapture_path = \"relative\"\n",
            "store.capture_path",
        ),
        (
            "[operator]\ndomains = [\"a.fr\"]\n[policy]\nliste_blanche = \"/nonexistent.xml\"\nrefresh_url = \"http://x.fr/l.xml\"\nca_file = \"/nonexistent.pem\"\n",
            "policy.refresh_url",
        ),
        (
            "[operator]\ndomains = [\"a.fr\"]\n[policy]\nliste_blanche = \"/nonexistent.xml\"\nrefresh_url = \"https://x.fr/l.xml\"\n",
            "policy.ca_file",
        ),
    ];
    for (text, key) in cases {
        let e = Config::parse(text).unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
    }
    let e = Config::parse("[store]\nretention_months = 3\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing field `operator`"), "{e}");
}

#[test]
fn unwritable_store_is_refused() {
    let mut c = Config::parse(MIN).unwrap();
    c.store.capture_path = "/proc/mss-cannot-exist/capture".into();
    let e = c.check_capture_writable().unwrap_err().to_string();
    assert!(e.contains("`store.capture_path`"), "{e}");
}

#[test]
fn non_loopback_http_listeners_need_a_token_file() {
    for (sec, body) in [
        ("metrics", "listen = \"0.0.0.0:9892\""),
        ("events", "listen = \"[::]:8892\""),
    ] {
        let e = Config::parse(&format!("{MIN}[{sec}]\n{body}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("key `{sec}.token_file`")), "{e}");
        assert!(e.contains("not a loopback address"), "{e}");
    }
    let c = Config::parse(&format!(
        "{MIN}[metrics]\nlisten = \"[::1]:9892\"\n[events]\nlisten = \"127.0.0.2:8892\"\n"
    ))
    .unwrap();
    assert!(c.metrics.unwrap().token.is_none());
    assert!(c.events.unwrap().token.is_none());
}

#[test]
fn token_file_is_read_checked_and_never_shown() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("token");
    std::fs::write(&f, "s3cret-token-0123456789\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "{MIN}[metrics]\nlisten = \"0.0.0.0:9892\"\ntoken_file = \"{}\"\n",
        f.display()
    );
    let c = Config::parse(&text).unwrap();
    let t = c.metrics.as_ref().unwrap().token.clone().unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
    assert!(t.accepts(Some(b"Bearer s3cret-token-0123456789")));
    assert!(t.accepts(Some(b"bearer  s3cret-token-0123456789 ")));
    assert!(!t.accepts(Some(b"Bearer s3cret-token-012345678")));
    assert!(!t.accepts(Some(b"Bearer s3cret-token-01234567890")));
    assert!(!t.accepts(Some(b"Basic s3cret-token-0123456789")));
    assert!(!t.accepts(Some(b"Bearer")));
    assert!(!t.accepts(None));
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Config::parse(&text).unwrap_err().to_string();
    assert!(
        e.contains("key `metrics.token_file`") && e.contains("readable by everyone"),
        "{e}"
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&f, "short\n").unwrap();
    let e = Config::parse(&text).unwrap_err().to_string();
    assert!(e.contains("at least 16") && !e.contains("short"), "{e}");
}

#[test]
fn service_user_defaults_to_mss() {
    assert_eq!(Config::parse(MIN).unwrap().service.user, "mss");
    let e = Config::parse(&format!("{MIN}[service]\nuser = \"a b\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`service.user`"), "{e}");
}

#[test]
fn operator_addresses() {
    let c = Config::parse(MIN).unwrap();
    assert!(c.is_operator_address("Dr.X@CH-A.mssante.fr"));
    assert!(!c.is_operator_address("x@other.fr"));
    assert!(!c.is_operator_address("<>"));
}
