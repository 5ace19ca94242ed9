#![no_main]
//! mss-export validate on a CSV (both file kinds).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rules = mss_exporter::validate::Rules {
        delimiter: b';',
        crlf: true,
        max_archive_bytes: 73_400_320,
    };
    mss_exporter::validate::check_bytes("202610_EchangesMSSante_ch-a.mssante.fr.csv", data, &rules);
    mss_exporter::validate::check_bytes(
        "202610_ConnexionsMSSante_ch-a.mssante.fr.csv",
        data,
        &rules,
    );
});
