//! The logger thread: drains every shard's access log ring, formats each record and writes
//! the lines to `log.access`.
//!
//! It owns the sink (stdout, or a file opened for appending), one batch buffer reused for
//! every line, and the consuming ends of the rings; nothing else writes to the sink, and
//! no shard ever waits for it: when the logger falls behind, a shard's ring fills and its
//! records are dropped and counted there. Invariants:
//! - never a busy loop: a pass that found every ring empty is followed by a sleep of
//!   [`IDLE_SLEEP`];
//! - bounded work and memory: a pass takes at most [`PASS_RECORDS`] records per ring (so a
//!   busy shard cannot starve the others or hide the stop request), and the batch is
//!   written whenever it reaches [`BATCH_BYTES`], then flushed at the end of the pass;
//! - a failing sink never stops the draining: the first failure (of a run of failures) is
//!   reported on stderr and lines are discarded until a write succeeds again;
//! - dropped records are reported on stderr, at most once per [`DROP_REPORT_INTERVAL`].

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{format_haproxy, format_json, LogRecord};
use crate::config::{Config, LogFormat, LogSink};
use crate::stats::ring::Consumer;
use crate::worker::StopFlag;

/// Sleep after a pass that found nothing: records wait at most this long (plus a pass),
/// and an idle logger wakes 100 times a second. At 16 Ki records per ring, a shard may
/// end 1.6 million exchanges a second before its ring overflows during one sleep.
pub const IDLE_SLEEP: Duration = Duration::from_millis(10);

/// Records taken from one ring per pass.
pub const PASS_RECORDS: usize = 1024;

/// A batch this large is written at once (one `write` for a few hundred lines); it bounds
/// the buffer's size.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Shortest time between two "records dropped" lines on stderr, so that a logger that
/// cannot keep up does not also flood stderr.
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Opens `config.log.access` and starts the logger thread (`ringproxy-log`) on `rings`
/// (one per shard).
///
/// The sink is opened before the thread starts, so a file that cannot be opened is this
/// function's error (the caller names the path: the error is the system's, as is); so is
/// a `config.log.access` of `None` (`InvalidInput`: start no logger then).
///
/// The thread runs until `stop` is requested, then drains the rings once more, flushes,
/// reports drops not yet reported, and ends. Request `stop` only once the shards are gone
/// (joined): a record pushed after the last drain is lost.
pub fn start(
    config: Arc<Config>,
    rings: Vec<Consumer<LogRecord>>,
    stop: Arc<StopFlag>,
) -> io::Result<JoinHandle<()>> {
    let (sink, sink_name) = open_sink(config.log.access.as_ref())?;
    let logger = Logger::new(config, rings, Output::new(sink, sink_name));
    thread::Builder::new()
        .name("ringproxy-log".into())
        .spawn(move || logger.run(&stop))
}

/// The sink and its name for messages.
fn open_sink(access: Option<&LogSink>) -> io::Result<(Box<dyn Write + Send>, String)> {
    match access {
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "log.access is not set: there is no access log to write",
        )),
        // `Stdout::write_all` takes std's stdout lock once per batch (no shard writes to
        // stdout on the data path), so other writers interleave between batches, never
        // inside a line.
        Some(LogSink::Stdout) => Ok((Box::new(io::stdout()), "stdout".into())),
        Some(LogSink::File(path)) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            Ok((Box::new(file), path.display().to_string()))
        }
    }
}

/// The logger's state; its methods are the thread's steps (tests call them directly).
struct Logger {
    config: Arc<Config>,
    rings: Vec<Consumer<LogRecord>>,
    format: fn(&LogRecord, &Config, &mut Vec<u8>),
    /// Lines formatted and not yet written; reused, so formatting does not allocate once
    /// it has grown to [`BATCH_BYTES`] and a line.
    batch: Vec<u8>,
    out: Output,
    drops: DropReport,
}

impl Logger {
    fn new(config: Arc<Config>, rings: Vec<Consumer<LogRecord>>, out: Output) -> Logger {
        let format = match config.log.format {
            LogFormat::Haproxy => format_haproxy,
            LogFormat::Json => format_json,
        };
        Logger {
            config,
            rings,
            format,
            batch: Vec::with_capacity(BATCH_BYTES + 1024),
            out,
            drops: DropReport::default(),
        }
    }

    fn run(mut self, stop: &StopFlag) {
        loop {
            // Read before the pass: whatever was pushed before the request is then seen
            // by the pass below or by `finish`.
            let stopping = stop.is_requested();
            let drained = self.pass();
            self.report_drops(Instant::now());
            if stopping {
                self.finish();
                return;
            }
            if drained == 0 {
                thread::sleep(IDLE_SLEEP);
            }
        }
    }

    /// The last drain: everything the rings hold, then the drops not yet reported.
    fn finish(&mut self) {
        // Each ring holds at most its capacity (`log.ring` rounded up to a power of two),
        // so this many passes empty what was there without chasing a producer that would
        // still be pushing.
        let passes = self.config.log.ring.max(2).next_power_of_two() / PASS_RECORDS + 1;
        for _ in 0..passes {
            if self.pass() == 0 {
                break;
            }
        }
        if let Some(n) = self.drops.pending(self.dropped_total()) {
            self.out.report_dropped(n);
        }
    }

    /// Takes up to [`PASS_RECORDS`] records from each ring, formats and writes them, and
    /// flushes if there were any. Returns how many it took.
    fn pass(&mut self) -> usize {
        let mut drained = 0;
        for ring in &mut self.rings {
            for _ in 0..PASS_RECORDS {
                let Some(record) = ring.pop() else { break };
                (self.format)(&record, &self.config, &mut self.batch);
                drained += 1;
                if self.batch.len() >= BATCH_BYTES {
                    self.out.write(&mut self.batch);
                }
            }
        }
        if drained > 0 {
            self.out.write(&mut self.batch);
            self.out.flush();
        }
        drained
    }

    fn dropped_total(&self) -> u64 {
        self.rings.iter().map(Consumer::dropped).sum()
    }

    fn report_drops(&mut self, now: Instant) {
        if let Some(n) = self.drops.due(self.dropped_total(), now) {
            self.out.report_dropped(n);
        }
    }
}

/// Where the lines go, and where the logger tells of its own troubles.
struct Output {
    sink: Box<dyn Write + Send>,
    /// `stdout` or the file's path, for messages.
    sink_name: String,
    /// The last write failed and was reported: the next failures are not, until a write
    /// succeeds.
    sink_failing: bool,
    /// stderr (a buffer in tests).
    diagnostics: Box<dyn Write + Send>,
}

impl Output {
    fn new(sink: Box<dyn Write + Send>, sink_name: String) -> Output {
        Output {
            sink,
            sink_name,
            sink_failing: false,
            diagnostics: Box::new(io::stderr()),
        }
    }

    /// Writes and empties `batch`.
    fn write(&mut self, batch: &mut Vec<u8>) {
        if batch.is_empty() {
            return;
        }
        let result = self.sink.write_all(batch);
        // Written or not, these lines are done: keeping them would grow the batch without
        // bound while the sink fails.
        batch.clear();
        match result {
            Ok(()) => self.sink_failing = false,
            Err(e) => self.sink_failed(&e),
        }
    }

    fn flush(&mut self) {
        // A successful flush does not re-arm the report: a file's flush does nothing.
        if let Err(e) = self.sink.flush() {
            self.sink_failed(&e);
        }
    }

    fn sink_failed(&mut self, e: &io::Error) {
        if !self.sink_failing {
            self.sink_failing = true;
            // Nothing better to do if stderr itself fails.
            let _ = writeln!(
                self.diagnostics,
                "ringproxy: access log: cannot write to {}: {e} (lines are lost until a write succeeds)",
                self.sink_name
            );
        }
    }

    fn report_dropped(&mut self, n: u64) {
        let _ = writeln!(
            self.diagnostics,
            "ringproxy: access log: {n} record(s) dropped (ring full)"
        );
    }
}

/// When to tell of dropped records: each time the total grew, but not more often than
/// [`DROP_REPORT_INTERVAL`]; drops in between add up into the next report.
#[derive(Debug, Default)]
struct DropReport {
    /// The total already reported.
    reported: u64,
    /// When the last report was made.
    last: Option<Instant>,
}

impl DropReport {
    /// The drops to report now, if any are new and the last report is old enough.
    fn due(&mut self, total: u64, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < DROP_REPORT_INTERVAL)
        {
            return None;
        }
        let n = self.pending(total)?;
        self.last = Some(now);
        Some(n)
    }

    /// The drops not yet reported, whatever the time (the last report, at exit).
    fn pending(&mut self, total: u64) -> Option<u64> {
        let n = total.checked_sub(self.reported).filter(|&n| n > 0)?;
        self.reported = total;
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::super::test_config;
    use super::*;
    use crate::stats::ring::{ring, Producer};

    /// A writer the test can read afterwards (a lock in a test is fine: no shard here).
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// A sink whose every write fails.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A file in the temp directory, unique to this process and test, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(test: &str) -> TempFile {
            let name = format!("ringproxy-{}-{test}.log", std::process::id());
            let path = std::env::temp_dir().join(name);
            let _ = std::fs::remove_file(&path);
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn config_to(path: &TempFile, format: LogFormat) -> Arc<Config> {
        let mut config = test_config();
        config.log.access = Some(LogSink::File(path.0.clone()));
        config.log.format = format;
        Arc::new(config)
    }

    /// An http record of frontend `web` that says which shard sent it and its sequence
    /// number (in `bytes_in`: `shard * 1_000_000 + seq`).
    fn numbered(shard: u64, seq: u64) -> LogRecord {
        let mut r = LogRecord::new(0);
        r.http = true;
        r.start_unix_us = 1_795_255_200_000_000 + seq;
        r.client = Some("127.0.0.1:40000".parse().unwrap());
        r.backend = Some(0);
        r.server = Some(0);
        r.status = 200;
        r.bytes_in = shard * 1_000_000 + seq;
        r.set_request_line(b"GET", format!("/{shard}/{seq}").as_bytes(), b"HTTP/1.1");
        r
    }

    fn push_all(producer: &Producer<LogRecord>, shard: u64, count: u64) {
        for seq in 0..count {
            assert!(producer.push(numbered(shard, seq)).is_ok(), "ring full");
        }
    }

    /// Two shards push while the logger runs: every record appears once, each shard's in
    /// its order, after what the file already held (append).
    #[test]
    fn writes_every_record_of_two_rings_to_a_file() {
        const PER_SHARD: u64 = 3000;
        let file = TempFile::new("two-rings");
        std::fs::write(&file.0, "earlier line\n").unwrap();
        let config = config_to(&file, LogFormat::Json);
        let (p0, c0) = ring(8192);
        let (p1, c1) = ring(8192);
        let stop = Arc::new(StopFlag::default());
        let logger = start(config, vec![c0, c1], Arc::clone(&stop)).unwrap();
        assert_eq!(logger.thread().name(), Some("ringproxy-log"));
        let shards: Vec<_> = [(p0, 0), (p1, 1)]
            .into_iter()
            .map(|(p, shard)| thread::spawn(move || push_all(&p, shard, PER_SHARD)))
            .collect();
        for s in shards {
            s.join().unwrap();
        }
        stop.request();
        logger.join().unwrap();

        let text = std::fs::read_to_string(&file.0).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("earlier line"));
        let mut next_seq = [0u64; 2];
        let mut seen = BTreeSet::new();
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let n = v["bytes_in"].as_u64().unwrap();
            let (shard, seq) = ((n / 1_000_000) as usize, n % 1_000_000);
            assert_eq!(seq, next_seq[shard], "shard {shard} out of order");
            next_seq[shard] += 1;
            assert_eq!(v["request"], format!("GET /{shard}/{seq} HTTP/1.1"));
            seen.insert(n);
        }
        assert_eq!(next_seq, [PER_SHARD; 2]);
        assert_eq!(seen.len() as u64, 2 * PER_SHARD);
    }

    /// Stop requested before the logger even looked: it still writes everything the rings
    /// hold (several passes' worth), then exits.
    #[test]
    fn stop_drains_what_is_left() {
        let file = TempFile::new("stop-drains");
        let config = config_to(&file, LogFormat::Haproxy);
        let (p0, c0) = ring(4096);
        let (p1, c1) = ring(4096);
        push_all(&p0, 0, 3 * PASS_RECORDS as u64 + 5);
        push_all(&p1, 1, 10);
        let stop = Arc::new(StopFlag::default());
        stop.request();
        start(config, vec![c0, c1], stop).unwrap().join().unwrap();

        let text = std::fs::read_to_string(&file.0).unwrap();
        assert_eq!(text.lines().count(), 3 * PASS_RECORDS + 5 + 10);
        assert!(text.lines().all(|l| l.contains(" web app/s1 ")));
        for last in ["\"GET /0/3076 HTTP/1.1\"\n", "\"GET /1/9 HTTP/1.1\"\n"] {
            assert_eq!(text.matches(last).count(), 1, "{last}");
        }
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_the_error() {
        let mut config = test_config();
        let missing = std::env::temp_dir().join("ringproxy-no-such-dir-7d1f/access.log");
        config.log.access = Some(LogSink::File(missing));
        let (_p, c) = ring::<LogRecord>(16);
        let e = start(Arc::new(config), vec![c], Arc::new(StopFlag::default())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);

        let (_p, c) = ring::<LogRecord>(16);
        let e = start(
            Arc::new(test_config()),
            vec![c],
            Arc::new(StopFlag::default()),
        );
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    fn logger_on(rings: Vec<Consumer<LogRecord>>, sink: Box<dyn Write + Send>) -> (Logger, Shared) {
        let diagnostics = Shared::default();
        let mut out = Output::new(sink, "test sink".into());
        out.diagnostics = Box::new(diagnostics.clone());
        (
            Logger::new(Arc::new(test_config()), rings, out),
            diagnostics,
        )
    }

    /// Records refused by full rings are told on stderr: the new ones each time, at most
    /// once a second, and what is left at the end.
    #[test]
    fn ring_full_drops_are_reported() {
        let (p0, c0) = ring(4);
        let (p1, c1) = ring(4);
        let out = Shared::default();
        let (mut logger, diagnostics) = logger_on(vec![c0, c1], Box::new(out.clone()));
        for seq in 0..10 {
            let _ = p0.push(numbered(0, seq));
        }
        for seq in 0..5 {
            let _ = p1.push(numbered(1, seq));
        }
        let t0 = Instant::now();
        logger.report_drops(t0);
        assert_eq!(
            diagnostics.text(),
            "ringproxy: access log: 7 record(s) dropped (ring full)\n"
        );
        assert_eq!(logger.pass(), 8);
        assert_eq!(out.text().lines().count(), 8);

        // Two more drops: not within the second, then once.
        for seq in 0..6 {
            let _ = p0.push(numbered(0, seq));
        }
        logger.report_drops(t0 + Duration::from_millis(500));
        assert_eq!(diagnostics.text().lines().count(), 1);
        logger.report_drops(t0 + DROP_REPORT_INTERVAL);
        assert!(diagnostics
            .text()
            .ends_with("\nringproxy: access log: 2 record(s) dropped (ring full)\n"));
        logger.report_drops(t0 + 3 * DROP_REPORT_INTERVAL);
        assert_eq!(
            diagnostics.text().lines().count(),
            2,
            "nothing new, nothing said"
        );

        // At the end, what was dropped since is reported at once.
        let _ = p1.push(numbered(1, 0));
        for seq in 0..4 {
            let _ = p1.push(numbered(1, seq));
        }
        logger.finish();
        assert!(diagnostics
            .text()
            .ends_with("\nringproxy: access log: 1 record(s) dropped (ring full)\n"));
        assert_eq!(out.text().lines().count(), 8 + 4 + 4);
    }

    #[test]
    fn drop_reports_are_rate_limited() {
        let mut report = DropReport::default();
        let t0 = Instant::now();
        assert_eq!(report.due(0, t0), None);
        assert_eq!(report.due(3, t0), Some(3));
        assert_eq!(report.due(5, t0 + Duration::from_millis(999)), None);
        assert_eq!(report.due(9, t0 + Duration::from_secs(1)), Some(6));
        assert_eq!(report.due(9, t0 + Duration::from_secs(5)), None);
        assert_eq!(report.pending(10), Some(1));
        assert_eq!(report.pending(10), None);
    }

    /// A sink that fails is reported once, and the rings are still emptied (the shards
    /// must never see the logger's trouble); a write that works again re-arms the report.
    #[test]
    fn a_failing_sink_is_reported_once_and_draining_goes_on() {
        let (p, c) = ring(16);
        let (mut logger, diagnostics) = logger_on(vec![c], Box::new(Broken));
        for round in 0..3 {
            push_all(&p, 0, 10);
            assert_eq!(logger.pass(), 10, "round {round}");
        }
        assert_eq!(p.dropped(), 0);
        assert_eq!(
            diagnostics.text(),
            "ringproxy: access log: cannot write to test sink: disk full (lines are lost until a write succeeds)\n"
        );

        let out = Shared::default();
        logger.out.sink = Box::new(out.clone());
        push_all(&p, 0, 1);
        logger.pass();
        assert_eq!(out.text().lines().count(), 1);
        logger.out.sink = Box::new(Broken);
        push_all(&p, 0, 1);
        logger.pass();
        assert_eq!(diagnostics.text().lines().count(), 2);
    }

    /// A long pass writes in batches of about [`BATCH_BYTES`], not one line at a time nor
    /// all at once.
    #[test]
    fn large_passes_are_written_in_batches() {
        #[derive(Clone, Default)]
        struct Writes(Arc<Mutex<Vec<usize>>>);
        impl Write for Writes {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().push(buf.len());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (p, c) = ring(2048);
        let writes = Writes::default();
        let (mut logger, _) = logger_on(vec![c], Box::new(writes.clone()));
        push_all(&p, 0, PASS_RECORDS as u64);
        assert_eq!(logger.pass(), PASS_RECORDS);
        let sizes = writes.0.lock().unwrap().clone();
        assert!(sizes.len() > 1, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n < BATCH_BYTES + 1024), "{sizes:?}");
        assert!(
            sizes[..sizes.len() - 1].iter().all(|&n| n >= BATCH_BYTES),
            "{sizes:?}"
        );
    }
}
