//! A soak: many commands with events flowing against one real QEMU, watching
//! the client's memory stay flat.
//!
//! One qmp-tokio client (current_thread runtime) on a QEMU with `-machine
//! none`, one subscription to `STOP` and `RESUME`. Each step is four
//! commands: `stop`, then its `STOP` event is awaited, `query-status`
//! (paused), `cont`, its `RESUME` event, `query-status` (running). The
//! client's live heap (a counting global allocator: this process only, not
//! QEMU's) and resident memory are printed at the start (connected and
//! subscribed), ten times along the way, and at the end, with the heap's
//! high-water mark.
//!
//! ```text
//! cargo bench -p qmp-benches --bench soak             # 20,000 commands
//! cargo bench -p qmp-benches --bench soak -- 1000000  # the full soak
//! ```

#[path = "support/measure.rs"]
#[allow(dead_code)] // Shared with the scale program, which raises the fd limit.
mod measure;

use std::time::Instant;

use futures_util::StreamExt;
use measure::{Counting, cpu_time, kib, live_heap, peak_heap, reset_peak, resident};
use qmp_tokio::qapi::commands::{Cont, QueryStatus, Stop};
use qmp_tokio::{Config, EventFilter};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Commands in one step: stop, query-status, cont, query-status.
const PER_STEP: usize = 4;

fn main() {
    let commands: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("usage: soak [COMMANDS]"))
        .unwrap_or(20_000);
    let Some(builder) = qmp_testsuite::peers::require_qemu("soak bench") else {
        eprintln!("SKIPPED: soak bench: no QEMU to measure against");
        return;
    };
    let steps = commands.div_ceil(PER_STEP);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let (_qemu, qmp) = qmp_tokio::launch(builder, Config::default())
            .await
            .expect("launch QEMU");
        let mut events = qmp.subscribe(EventFilter::name("STOP").or_name("RESUME"));
        let (heap0, rss0) = (live_heap(), resident());
        reset_peak();
        println!(
            "start: heap {}, resident {}",
            kib(heap0 as f64),
            kib(rss0 as f64)
        );
        let (t0, c0) = (Instant::now(), cpu_time());
        let mut rss_peak = rss0;
        let every = steps.div_ceil(10).max(1);
        for step in 1..=steps {
            qmp.execute(&Stop).await.expect("stop");
            let stop = events.next().await.expect("the STOP event").expect("no lag");
            assert_eq!(stop.name(), "STOP");
            let status = qmp.execute(&QueryStatus).await.expect("query-status");
            assert!(!status.running, "paused after stop");
            qmp.execute(&Cont).await.expect("cont");
            let resume = events.next().await.expect("the RESUME event").expect("no lag");
            assert_eq!(resume.name(), "RESUME");
            let status = qmp.execute(&QueryStatus).await.expect("query-status");
            assert!(status.running, "running after cont");
            if step % every == 0 || step == steps {
                let rss = resident();
                rss_peak = rss_peak.max(rss);
                println!(
                    "{:>9} commands: heap {}, resident {}, {:.1?} elapsed",
                    step * PER_STEP,
                    kib(live_heap() as f64),
                    kib(rss as f64),
                    t0.elapsed()
                );
            }
        }
        let (wall, cpu) = (t0.elapsed(), cpu_time().saturating_sub(c0));
        let done = steps * PER_STEP;
        println!(
            "end: {done} commands and {} events in {wall:.1?} (client cpu {cpu:.1?}, {:.2?}/command)",
            steps * 2,
            cpu / u32::try_from(done).unwrap_or(u32::MAX).max(1),
        );
        println!(
            "heap: start {}, peak {}, end {}; resident: start {}, peak {}, end {}",
            kib(heap0 as f64),
            kib(peak_heap() as f64),
            kib(live_heap() as f64),
            kib(rss0 as f64),
            kib(rss_peak as f64),
            kib(resident() as f64),
        );
    });
}
