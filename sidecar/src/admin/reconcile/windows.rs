//! The sidecar's own marks in the mail log (`mss-sidecar[pid]: started …`,
//! `stopping (SIGTERM)`, `stopped`, written by `crate::marks`): the windows
//! it was down, even when no message passed to make Postfix warn.

use serde::Serialize;

/// One window the sidecar was not running, local times.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DownWindow {
    /// The `stopping` mark; `None` when it died without one (killed, crashed,
    /// host down): the window began after the mark before it.
    pub from: Option<String>,
    /// The next `started` mark; `None`: still down at the end of the logs.
    pub to: Option<String>,
    /// Stopped on purpose (a `stopping` mark before the next `started`).
    pub clean: bool,
}

/// Collects the marks (files may come in any order), then follows them in
/// time order.
#[derive(Default)]
pub struct Windows {
    /// (time, is a start), in reading order.
    marks: Vec<(i64, bool)>,
}

impl Windows {
    /// One line of program `mss-sidecar` at `time_us`.
    pub fn mark(&mut self, time_us: i64, msg: &str) {
        if msg.starts_with("started") {
            self.marks.push((time_us, true));
        } else if msg.starts_with("stopping") || msg.starts_with("stopped") {
            self.marks.push((time_us, false));
        }
    }

    /// The windows, the last one left open if the logs end while down.
    pub fn finish(mut self, fmt: impl Fn(i64) -> String) -> Vec<DownWindow> {
        self.marks.sort_by_key(|(t, _)| *t);
        let (mut open, mut running) = (None::<i64>, false);
        let mut out = vec![];
        for (t, start) in self.marks {
            if start {
                match open.take() {
                    Some(from) => out.push((Some(from), Some(t), true)),
                    None if running => out.push((None, Some(t), false)),
                    None => {}
                }
                running = true;
            } else {
                open.get_or_insert(t);
                running = false;
            }
        }
        if let Some(from) = open {
            out.push((Some(from), None, true));
        }
        out.into_iter()
            .map(|(a, b, clean)| DownWindow {
                from: a.map(&fmt),
                to: b.map(&fmt),
                clean,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_stop_crash_and_still_down() {
        let mut w = Windows::default();
        for (t, m) in [
            (1, "started: version 0.1.0, milter 127.0.0.1:1"),
            (2, "stopping (SIGTERM)"),
            (3, "stopped"),
            (4, "started: version 0.1.0"),
            // killed with SIGKILL: no stopping mark
            (6, "started: version 0.1.0"),
            (7, "stopping (SIGINT)"),
        ] {
            w.mark(t, m);
        }
        assert_eq!(
            w.finish(|t| t.to_string()),
            vec![
                DownWindow {
                    from: Some("2".into()),
                    to: Some("4".into()),
                    clean: true
                },
                DownWindow {
                    from: None,
                    to: Some("6".into()),
                    clean: false
                },
                DownWindow {
                    from: Some("7".into()),
                    to: None,
                    clean: true
                },
            ]
        );
    }
}
