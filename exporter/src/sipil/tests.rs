use super::*;

fn sipil(extra: &str) -> Sipil {
    let text = format!(
        "[operator]\ndomains = [\"a.fr\"]\n[sipil]\npost_url = \"https://x.fr/p\"\nreport_url = \"https://x.fr/r\"\n{extra}"
    );
    mss_shared::config::Config::parse(&text)
        .unwrap()
        .sipil
        .unwrap()
}

#[test]
fn default_patterns_classify_plausible_reports() {
    let s = sipil("");
    for (text, want) in [
        ("Dépôt accepté", Verdict::Accepted),
        (
            "Fichier intégré avec succès, 0 erreur bloquante",
            Verdict::Accepted,
        ),
        ("STATUS=OK", Verdict::Accepted),
        ("Traitement en cours", Verdict::Pending),
        ("validation en attente", Verdict::Pending),
        ("Dépôt rejeté : 2 erreurs bloquantes", Verdict::Rejected),
        ("3 blocking errors found", Verdict::Rejected),
        ("STATUS=KO", Verdict::Rejected),
        ("", Verdict::Pending),
    ] {
        assert_eq!(classify(&s, text).0, want, "{text}");
    }
}

#[test]
fn deposit_id_default_and_regex() {
    assert_eq!(
        deposit_id(&sipil(""), "  DEP-42\n").as_deref(),
        Some("DEP-42")
    );
    assert_eq!(deposit_id(&sipil(""), " \n"), None);
    let s = sipil("deposit_id_regex = '<id>(\\w+)</id>'\n");
    assert_eq!(deposit_id(&s, "<r><id>A1</id></r>").as_deref(), Some("A1"));
    assert_eq!(deposit_id(&s, "<r>error</r>"), None);
}

#[test]
fn der_validity_of_garbage_is_none() {
    assert_eq!(validity(b""), None);
    assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    assert_eq!(validity(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
}

#[test]
fn readable_reports() {
    assert_eq!(readable("<r><s>OK</s>\n<m>fine</m></r>"), "OK\nfine");
    assert!(readable("{\"a\":1}").contains("\"a\": 1"));
}
