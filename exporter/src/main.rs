//! `mss-export`: build, validate and submit the monthly ANS archive.
//!
//! Not implemented yet: this binary only reserves the name and the exit-code
//! contract so that packaging and timers can be written against it.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("mss-export {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    eprintln!("error: mss-export is not implemented in this version (build/validate/submit come with the exporter issue)");
    std::process::exit(mss_shared::exit::UNEXPECTED);
}
