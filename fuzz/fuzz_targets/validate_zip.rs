#![no_main]
//! mss-export validate on a ZIP archive.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rules = mss_exporter::validate::Rules {
        delimiter: b';',
        crlf: true,
        max_archive_bytes: 73_400_320,
    };
    mss_exporter::validate::check_bytes("202610_ch-a.mssante.fr.zip", data, &rules);
});
