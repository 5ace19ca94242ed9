//! The test harness itself: a private Postfix never starts with a config that
//! makes it warn (the postlogd deadlock of issue 20), and every stop is
//! bounded, even of an instance that no longer answers.

use std::time::{Duration, Instant};

use mss_tests::guard::signal;
use mss_tests::postfix::{warnings, PostfixBuilder};

fn alive(pid: u32) -> bool {
    // A zombie is not alive: it holds no socket, no queue, no lock.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn a_duplicate_main_cf_key_fails_the_start_with_a_message_naming_the_key() {
    let err = PostfixBuilder::new()
        .raw_main_cf("mynetworks = 10.0.0.0/8")
        .start()
        .err()
        .expect("a main.cf with mynetworks twice must not start");
    let msg = err.to_string();
    assert!(
        msg.contains("overriding earlier entry: mynetworks="),
        "the error names the key: {msg}"
    );
}

#[test]
fn a_key_set_again_is_written_once_and_postfix_starts_without_a_warning() {
    let pf = PostfixBuilder::new()
        .main_cf("mynetworks = 127.0.0.0/8, 192.0.2.0/24")
        .main_cf("smtpd_relay_restrictions = permit_mynetworks, reject")
        .start()
        .expect("postfix");
    let main = std::fs::read_to_string(pf.conf.join("main.cf")).unwrap();
    let lines: Vec<&str> = main
        .lines()
        .filter(|l| l.starts_with("mynetworks "))
        .collect();
    assert_eq!(lines, ["mynetworks = 127.0.0.0/8, 192.0.2.0/24"]);
    assert_eq!(main.matches("\nsmtpd_relay_restrictions =").count(), 1);
    assert!(
        pf.wait_log("daemon started", Duration::from_secs(10)),
        "{}",
        pf.log()
    );
    assert_eq!(warnings(&pf.log()), Vec::<&str>::new());
    let master = pf.master_pid().expect("master.pid");
    drop(pf);
    assert!(!alive(master), "master {master} outlived its instance");
}

/// A master that no longer runs (SIGSTOP: it cannot take `postfix stop`'s
/// SIGTERM) is still gone, with its children, within the drop's bounds.
#[test]
fn a_stuck_postfix_is_killed_within_the_bounds_of_its_drop() {
    let pf = PostfixBuilder::new().start().expect("postfix");
    let master = pf.master_pid().expect("master.pid");
    // One smtpd child, so that there is a process group to kill.
    let _c = std::net::TcpStream::connect(pf.addr()).unwrap();
    assert!(
        pf.wait_log("connect from", Duration::from_secs(10)),
        "{}",
        pf.log()
    );
    signal(master as i64, "STOP");
    let t = Instant::now();
    drop(pf);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(60), "drop took {took:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(master) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(master), "stopped master {master} survived the drop");
}
